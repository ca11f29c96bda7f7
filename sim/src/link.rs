//! The simulated inter-router link: propagation latency, jitter, loss
//! probability and bandwidth. Each direction is a FIFO: a message is
//! serialised after the previous one (size / bandwidth) and never overtakes it,
//! like one gRPC stream.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

/// Link parameters shared by every link of a run.
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Uniform extra delay in `[0, jitter]`.
    pub jitter: Duration,
    /// Probability that a control message is lost.
    pub loss: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
}

impl LinkModel {
    /// Serialisation delay of `bytes`.
    pub fn serialisation(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec)
    }
}

/// One direction of one link.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    /// When the sender side finishes serialising what was queued.
    busy_until: Duration,
    /// Arrival time of the last message (keeps FIFO order under jitter).
    last_arrival: Duration,
}

/// What the link did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit {
    /// Arrives at the far end at this time.
    Arrives(Duration),
    /// Lost on the way.
    Lost,
}

impl Channel {
    /// Sends `bytes` at `now`: when it arrives, or that it was lost. Lost
    /// messages still occupy the link for their serialisation time.
    pub fn send(
        &mut self,
        now: Duration,
        bytes: usize,
        model: &LinkModel,
        lossy: bool,
        rng: &mut StdRng,
    ) -> Transit {
        let start = self.busy_until.max(now);
        let done = start + model.serialisation(bytes);
        self.busy_until = done;
        if lossy && model.loss > 0.0 && rng.random::<f64>() < model.loss {
            return Transit::Lost;
        }
        let jitter = if model.jitter.is_zero() {
            Duration::ZERO
        } else {
            model.jitter.mul_f64(rng.random::<f64>())
        };
        let arrival = (done + model.latency + jitter).max(self.last_arrival);
        self.last_arrival = arrival;
        Transit::Arrives(arrival)
    }

    /// Forgets queued traffic (the link went down).
    pub fn reset(&mut self, now: Duration) {
        self.busy_until = now;
        self.last_arrival = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> LinkModel {
        LinkModel {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            bytes_per_sec: 1_000_000.0,
        }
    }

    #[test]
    fn back_to_back_messages_queue_behind_each_other() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut ch = Channel::default();
        let m = model();
        // 1000 bytes at 1 MB/s = 1 ms serialisation + 1 ms latency.
        assert_eq!(
            ch.send(Duration::ZERO, 1000, &m, true, &mut rng),
            Transit::Arrives(Duration::from_millis(2))
        );
        assert_eq!(
            ch.send(Duration::ZERO, 1000, &m, true, &mut rng),
            Transit::Arrives(Duration::from_millis(3))
        );
    }

    #[test]
    fn loss_drops_about_the_configured_fraction() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut ch = Channel::default();
        let m = LinkModel {
            loss: 0.25,
            ..model()
        };
        let lost = (0..4000)
            .filter(|_| ch.send(Duration::ZERO, 1, &m, true, &mut rng) == Transit::Lost)
            .count();
        assert!((800..1200).contains(&lost), "lost {lost}");
    }
}
