//! What the router's actors share about one link beside its connection's
//! engine: [`LinkCounters`], which lives in the read model ([`crate::model`])
//! with the rest of the router's counters.

pub use crate::model::LinkCounters;
