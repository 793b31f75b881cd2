//! The checks. Each is a plain `async fn` over a [`StoreFactory`](super::StoreFactory),
//! usable on its own; a file per area.

mod analytics;
mod append;
mod concurrency;
mod create;
mod list;
mod maintenance;
mod prelude;
mod update;

pub use analytics::*;
pub use append::*;
pub use concurrency::*;
pub use create::*;
pub use list::*;
pub use maintenance::*;
pub use update::*;
