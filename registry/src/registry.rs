//! [`ModuleDirectory`] and the in-process [`Registry`].

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use colloquy_core::{Capability, ModuleInfo, ModuleName};

use crate::{Module, RegistryError};

/// A registered module: its handler, what it declared, and its handler deadline.
#[derive(Clone)]
pub struct Registered {
    /// What the module declared at registration.
    pub info: Arc<ModuleInfo>,
    /// The module.
    pub module: Arc<dyn Module>,
    /// Its handler deadline, if it overrides the hub's.
    pub deadline: Option<Duration>,
    /// How its handler is run (see [`Delivery`]).
    pub delivery: Delivery,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("info", &self.info)
            .field("deadline", &self.deadline)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Where the router looks modules up. [`Registry`] is the in-process implementation; a
/// future networked directory would implement the same trait.
pub trait ModuleDirectory: Send + Sync + 'static {
    /// The module registered as `name`.
    fn get(&self, name: &ModuleName) -> Option<Registered>;

    /// The names of every registered module, sorted.
    fn names(&self) -> Vec<ModuleName>;
}

/// How the router runs a module's handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The default: the handler runs as its own tokio task, and the caller waits for it
    /// with the deadline. A handler that blocks its thread (a synchronous client, a
    /// CPU-heavy step) cannot hold the caller past the deadline on a multi-threaded
    /// runtime, and a result that arrives after the deadline is never stored, on any
    /// runtime.
    #[default]
    Task,
    /// The handler is polled in place, on the caller's task: no task per turn, which is
    /// measurably faster for handlers that answer at once. **Only for handlers that never
    /// block their thread**: a blocking handler holds its caller until it returns (its
    /// late result is still refused, never stored).
    Inline,
}

impl Delivery {
    /// True for [`Delivery::Inline`]. Exhaustive here, in the crate that defines the
    /// variants, so a new way of delivery cannot silently fall into another's branch.
    pub fn is_inline(self) -> bool {
        match self {
            Self::Task => false,
            Self::Inline => true,
        }
    }
}

/// How to register a module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// Replace a module already registered under the same name instead of failing.
    pub replace: bool,
    /// The module's handler deadline, overriding the hub's default.
    pub deadline: Option<Duration>,
    /// How its handler is run. Default [`Delivery::Task`].
    pub delivery: Delivery,
}

impl Registration {
    /// Fail on a duplicate name; use the hub's deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace an existing module of the same name.
    pub fn replacing(mut self) -> Self {
        self.replace = true;
        self
    }

    /// Sets the handler deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Polls the handler in place ([`Delivery::Inline`]): faster, and only for handlers
    /// that never block their thread.
    pub fn inline(mut self) -> Self {
        self.delivery = Delivery::Inline;
        self
    }
}

/// The in-process module directory.
///
/// ```
/// # use colloquy_registry::*;
/// # use colloquy_core::ModuleInfo;
/// # struct Echo;
/// # #[async_trait::async_trait]
/// # impl Module for Echo {
/// #     fn info(&self) -> ModuleInfo { ModuleInfo::new("echo".parse().unwrap()).with_capability("echo".parse().unwrap()) }
/// #     async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> { Ok(Response::reply(turn.message.content.clone())) }
/// # }
/// let registry = Registry::new();
/// registry.register(std::sync::Arc::new(Echo), Registration::new())?;
/// assert!(registry.register(std::sync::Arc::new(Echo), Registration::new()).is_err());
/// assert_eq!(registry.find_by_capability(&"echo".parse()?).len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Registry {
    modules: RwLock<BTreeMap<ModuleName, Registered>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    // Every critical section below is a plain map operation that cannot panic, so a
    // poisoned lock still guards consistent data.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ModuleName, Registered>> {
        self.modules.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ModuleName, Registered>> {
        self.modules.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `module` under the name from its [`Module::info`].
    ///
    /// Errors: [`RegistryError::Duplicate`] if the name is taken and
    /// `registration.replace` is false.
    pub fn register(
        &self,
        module: Arc<dyn Module>,
        registration: Registration,
    ) -> Result<Registered, RegistryError> {
        let info = Arc::new(module.info());
        let entry = Registered {
            info: Arc::clone(&info),
            module,
            deadline: registration.deadline,
            delivery: registration.delivery,
        };
        let mut modules = self.write();
        if !registration.replace && modules.contains_key(&info.name) {
            return Err(RegistryError::Duplicate {
                name: info.name.clone(),
            });
        }
        modules.insert(info.name.clone(), entry.clone());
        Ok(entry)
    }

    /// Removes the module registered as `name`.
    pub fn unregister(&self, name: &ModuleName) -> Result<Registered, RegistryError> {
        let mut modules = self.write();
        modules
            .remove(name)
            .ok_or_else(|| RegistryError::NotRegistered {
                name: name.clone(),
                registered: modules.keys().cloned().collect(),
            })
    }

    /// What every registered module declared, sorted by name.
    pub fn list(&self) -> Vec<Arc<ModuleInfo>> {
        self.read().values().map(|r| Arc::clone(&r.info)).collect()
    }

    /// The modules that declared `capability`, sorted by name.
    pub fn find_by_capability(&self, capability: &Capability) -> Vec<Arc<ModuleInfo>> {
        self.read()
            .values()
            .filter(|r| r.info.has_capability(capability))
            .map(|r| Arc::clone(&r.info))
            .collect()
    }

    /// Number of registered modules.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

impl ModuleDirectory for Registry {
    fn get(&self, name: &ModuleName) -> Option<Registered> {
        self.read().get(name).cloned()
    }

    fn names(&self) -> Vec<ModuleName> {
        self.read().keys().cloned().collect()
    }
}
