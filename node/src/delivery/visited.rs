//! The routers a delivery has visited on its way through the mesh.

use std::sync::Arc;

/// The routers a delivery visited, ingress first (qdrouterd's trace; named
/// apart from the trace context of distributed tracing). Shared: deliveries
/// that arrive along the same path share one list (see `mesh::data`), and
/// copies clone an `Arc`. The empty list (a delivery still on its ingress
/// router) allocates nothing.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct VisitedRouters(Option<Arc<[bote_topology::RouterId]>>);

impl VisitedRouters {
    /// True when both are the same shared list (or both empty): a cheap
    /// cache check, not an equality test.
    pub fn same(&self, other: &VisitedRouters) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for VisitedRouters {
    type Target = [bote_topology::RouterId];
    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl From<Vec<bote_topology::RouterId>> for VisitedRouters {
    fn from(routers: Vec<bote_topology::RouterId>) -> VisitedRouters {
        if routers.is_empty() {
            VisitedRouters(None)
        } else {
            VisitedRouters(Some(routers.into()))
        }
    }
}
