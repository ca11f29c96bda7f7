//! The router annotations qdrouterd writes into messages it delivers to
//! clients, for listeners that do not strip them on the way out
//! (`strip-annotations = "no"` or `"in"`): `x-opt-qd.ingress`, the router
//! where the message entered the mesh, and `x-opt-qd.trace`, the routers it
//! went through in order, ending with this one. Router ids take qdrouterd's
//! form `0/<router-id>` (area 0), so tools written for qdrouterd read them.
//!
//! Bote routes on the trace that travels beside the message between routers
//! (`RoutedDelivery::trace`); it never reads these annotations from a
//! client, and the splice here replaces any a client put in. The bare message
//! is never re-encoded ([`MessageView::splice_into`]): only the
//! message-annotations section is rewritten. This runs only for annotating
//! listeners; the default path sends the received bytes untouched.

use bytes::{Bytes, BytesMut};

use bote_amqp::{DeliveryAnnotations, MessageAnnotations, MessageError, MessageView, primitive};

/// The `x-opt-qd.ingress` annotation key.
pub const INGRESS: &str = "x-opt-qd.ingress";
/// The `x-opt-qd.trace` annotation key.
pub const TRACE: &str = "x-opt-qd.trace";

/// qdrouterd's form of a router id in annotations: `0/<router-id>`.
pub fn node_id(router: &str) -> String {
    format!("0/{router}")
}

/// Annotates messages leaving this router for a client.
#[derive(Debug, Clone)]
pub struct RouterAnnotations {
    /// This router as `0/<id>`.
    own: String,
}

impl RouterAnnotations {
    /// For the router `router_id`.
    pub fn new(router_id: &str) -> RouterAnnotations {
        RouterAnnotations {
            own: node_id(router_id),
        }
    }

    /// `message` (a whole message, or the first part of a streamed one when
    /// `whole` is false) with `x-opt-qd.ingress` = the first router of
    /// `visited` (this router if none) and `x-opt-qd.trace` = `visited` then
    /// this router, merged into its message-annotations. The other
    /// annotations and every other byte are kept as received.
    ///
    /// Fails if the sections before the bare message are malformed, or — for
    /// a first part — do not end within it (the new section could not be
    /// placed): the caller then sends the message as it is.
    pub fn annotate<R: AsRef<str>>(
        &self,
        message: &Bytes,
        whole: bool,
        visited: &[R],
        extra: &[(&str, &[u8])],
    ) -> Result<Bytes, MessageError> {
        let trace: Vec<String> = visited.iter().map(|r| node_id(r.as_ref())).collect();
        let mut ids: Vec<&str> = trace.iter().map(String::as_str).collect();
        ids.push(&self.own);
        let ingress = primitive::to_vec(|o| primitive::string(o, ids[0]));
        let trace = primitive::to_vec(|o| primitive::string_list(o, &ids));
        let mut entries: Vec<(&str, &[u8])> = vec![(INGRESS, &ingress), (TRACE, &trace)];
        entries.extend_from_slice(extra);
        splice(message, whole, &entries)
    }
}

/// `message` (a whole message, or the first part of a streamed one when
/// `whole` is false) with `entries` (symbol key, encoded value) merged into
/// its message-annotations: the other annotations and every other byte are
/// kept as received, the bare message is copied, never re-encoded. Also
/// used for the trace context written on egress (`delivery::trace`).
///
/// Fails if the sections before the bare message are malformed, or — for a
/// first part — do not end within it (the new section could not be placed):
/// the caller then sends the message as it is.
pub fn splice(
    message: &Bytes,
    whole: bool,
    entries: &[(&str, &[u8])],
) -> Result<Bytes, MessageError> {
    let head = MessageView::parse_head(message)?;
    let bare = head.bare_message_start();
    if !whole && bare == message.len() {
        // The part ends where the bare message would start: the next
        // part may still hold annotation sections.
        return Err(MessageError {
            what: "message-annotations section",
            offset: bare,
            problem: bote_amqp::Problem::Truncated,
        });
    }
    let extra: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = BytesMut::with_capacity(message.len() + extra + 16);
    head.splice_into(
        DeliveryAnnotations::Keep,
        &MessageAnnotations::Merge(entries),
        &mut out,
    )?;
    out.extend_from_slice(&message[bare..]);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_amqp::MessageBuilder;

    fn strings(v: &MessageView, key: &str) -> Vec<String> {
        let value = v
            .message_annotation(key)
            .expect("annotations decode")
            .unwrap_or_else(|| panic!("{key} present"));
        value
            .as_list()
            .expect("a list")
            .map(|item| item.expect("item").as_string().expect("string").to_owned())
            .collect()
    }

    fn ingress(v: &MessageView) -> String {
        v.message_annotation(INGRESS)
            .expect("annotations decode")
            .expect("ingress present")
            .as_string()
            .expect("string")
            .to_owned()
    }

    #[test]
    fn a_message_through_a_b_c_is_annotated_with_ingress_a_and_trace_a_b_c() {
        let message = MessageBuilder::new()
            .durable(true)
            .message_annotation(
                "x-opt-custom",
                primitive::to_vec(|o| primitive::ulong(o, 7)),
            )
            .to("closest.q")
            .data(b"payload")
            .build();
        let before = MessageView::parse(message.clone()).expect("parses");
        let out = RouterAnnotations::new("Router.C")
            .annotate(&message, true, &["Router.A", "Router.B"], &[])
            .expect("annotated");
        let v = MessageView::parse(out).expect("annotated message parses");
        assert_eq!(ingress(&v), "0/Router.A");
        assert_eq!(
            strings(&v, TRACE),
            ["0/Router.A", "0/Router.B", "0/Router.C"]
        );
        assert!(
            v.message_annotation("x-opt-custom")
                .expect("decodes")
                .is_some()
        );
        assert_eq!(
            v.bare_message(),
            before.bare_message(),
            "bare message kept byte for byte"
        );
        assert!(v.durable().expect("header kept"));
    }

    #[test]
    fn a_local_delivery_names_this_router_as_ingress_and_trace_and_replaces_a_clients_values() {
        let message = MessageBuilder::new()
            .message_annotation(
                INGRESS,
                primitive::to_vec(|o| primitive::string(o, "forged")),
            )
            .data(b"x")
            .build();
        let out = RouterAnnotations::new("Router.T")
            .annotate::<&str>(&message, true, &[], &[])
            .expect("annotated");
        let v = MessageView::parse(out).expect("parses");
        assert_eq!(ingress(&v), "0/Router.T");
        assert_eq!(strings(&v, TRACE), ["0/Router.T"]);
    }

    #[test]
    fn the_first_part_of_a_streamed_message_is_annotated_and_the_rest_follows_unchanged() {
        let body = vec![b'z'; 4000];
        let message = MessageBuilder::new()
            .durable(true)
            .to("q")
            .data(&body)
            .build();
        let (first, rest) = message.split_at(100);
        let first = Bytes::copy_from_slice(first);
        let out = RouterAnnotations::new("Router.C")
            .annotate(&first, false, &["Router.A"], &[])
            .expect("first part annotated");
        let mut whole = BytesMut::from(&out[..]);
        whole.extend_from_slice(rest);
        let v = MessageView::parse(whole.freeze()).expect("reassembled message parses");
        assert_eq!(strings(&v, TRACE), ["0/Router.A", "0/Router.C"]);
        assert_eq!(v.data_sections().next().expect("a data section"), &body[..]);
    }

    #[test]
    fn a_first_part_that_ends_inside_or_right_after_the_annotations_is_not_annotated() {
        let message = MessageBuilder::new()
            .durable(true)
            .message_annotation(
                "x-opt-big",
                primitive::to_vec(|o| primitive::binary(o, &[1; 300])),
            )
            .data(b"x")
            .build();
        let annotations = RouterAnnotations::new("Router.C");
        let view = MessageView::parse(message.clone()).expect("parses");
        let bare = view.bare_message_start();
        // Inside the annotations, right after them, or inside the next
        // section's descriptor: the part cannot say where the bare message starts.
        for cut in [10, bare - 1, bare, bare + 1] {
            let part = message.slice(..cut);
            assert!(
                annotations
                    .annotate::<&str>(&part, false, &[], &[])
                    .is_err(),
                "cut at {cut}"
            );
        }
        // Once the body section's descriptor (0x00 0x53 0x75) is in, it can.
        assert!(
            annotations
                .annotate::<&str>(&message.slice(..bare + 3), false, &[], &[])
                .is_ok()
        );
    }
}
