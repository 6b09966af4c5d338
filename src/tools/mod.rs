//! What ships beside the daemon but is not the daemon: the simulators of the systems
//! around it (`sim`), the commands built on them (`demo`, `load`), and the operator's
//! commands that work without a running daemon (`replay` a capture, `outbox` on the
//! store). The daemon's own modules never import from here (their tests may).

pub mod demo;
pub mod load;
pub mod outbox;
pub mod replay;
pub mod sim;
