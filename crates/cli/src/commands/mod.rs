//! One module per `kappa` subcommand (after nextest's `dispatch/`): each holds the command's
//! arguments and the function that runs it, returning the exit code.

pub mod bench;
pub mod cancel;
pub mod coordinator;
pub mod export;
pub mod plan;
pub mod report;
pub mod retry;
pub mod run;
pub mod status;
pub mod submit;
pub mod token;
pub mod watch;
pub mod worker;
