//! The routing brain of a Bote router, free of I/O: the link-state database,
//! shortest paths (petgraph), the control protocol as a sans-I/O state
//! machine, and the forwarding policies (closest, balanced, multicast).
