//! Modules and where to find them.
//!
//! - [`Module`]: the trait a participant implements: [`Module::info`] (name, description,
//!   capabilities, schemas), the [`Module::on_invite`] handshake hook (accepts by default)
//!   and the async [`Module::handle`] that receives a [`Turn`] (the message, the
//!   conversation's state and context, recent history) and returns a [`Response`].
//! - [`ModuleDirectory`]: how the router looks modules up, and [`Registry`], the in-process
//!   directory (register, unregister, get, list, find by capability).
//!
//! # What this crate deliberately does not do
//!
//! - **No routing or delivery.** Calling handlers, deadlines and panics are the router's.
//! - **No persistence.** The runtime records registrations in the store.
//! - **No per-conversation state in modules.** Everything a handler needs arrives with the
//!   turn, so modules cannot leak context between conversations.

mod caller;
mod module;
mod registry;

pub use caller::Caller;
pub use colloquy_core::ModuleInfo;
pub use module::{
    ConversationView, History, Invitation, Module, ModuleError, Reply, Response, Turn,
};
pub use registry::{Delivery, ModuleDirectory, Registered, Registration, Registry};

use colloquy_core::ModuleName;

/// Errors of the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A module with this name is already registered.
    #[error("a module named {name} is already registered; unregister it first or register with Registration::replacing()")]
    Duplicate {
        /// The name.
        name: ModuleName,
    },
    /// No module with this name is registered.
    #[error("no module named {name} is registered (registered: {list})", list = ModuleName::join(registered))]
    NotRegistered {
        /// The name.
        name: ModuleName,
        /// The names that are registered.
        registered: Vec<ModuleName>,
    },
}
