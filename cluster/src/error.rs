//! [`ClusterError`].

use std::net::SocketAddr;

/// Why a hub cannot take part in its cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The link's address cannot be listened on.
    #[error("the cluster link cannot listen on {address}: {source}; choose a free address and port (port 0 picks one)")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The link would listen beyond this machine without a secret.
    #[error("the cluster link would listen on {address}, reachable from other machines, without a cluster secret: anyone who reaches it could run turns on this hub's modules; give every hub of the cluster the same secret, or listen on a loopback address")]
    SecretRequired {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The secret is empty or not a valid header value.
    #[error("the cluster secret must be non-empty printable ASCII without spaces (it travels as a bearer token); it has {length} bytes")]
    BadSecret {
        /// Its length in bytes.
        length: usize,
    },
}
