//! The registry: duplicates, replacement, lookup by name and capability.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use colloquy_core::{ModuleInfo, ModuleName};
use colloquy_registry::*;

struct Named(ModuleInfo);

#[async_trait::async_trait]
impl Module for Named {
    fn info(&self) -> ModuleInfo {
        self.0.clone()
    }
    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::NoReply)
    }
}

fn module(name: &str, capabilities: &[&str], version: &str) -> Arc<dyn Module> {
    let mut info = ModuleInfo::new(name.parse().unwrap()).with_version(version);
    for c in capabilities {
        info = info.with_capability(c.parse().unwrap());
    }
    Arc::new(Named(info))
}

fn n(s: &str) -> ModuleName {
    s.parse().unwrap()
}

#[test]
fn duplicates_are_refused_unless_replacing() {
    let registry = Registry::new();
    registry
        .register(module("planner", &["plan"], "1.0.0"), Registration::new())
        .unwrap();
    let err = registry
        .register(module("planner", &["plan"], "2.0.0"), Registration::new())
        .unwrap_err();
    assert_eq!(err, RegistryError::Duplicate { name: n("planner") });
    assert!(err.to_string().contains("replacing"), "{err}");
    assert_eq!(registry.get(&n("planner")).unwrap().info.version, "1.0.0");
    registry
        .register(
            module("planner", &["plan"], "2.0.0"),
            Registration::new()
                .replacing()
                .deadline(Duration::from_secs(3)),
        )
        .unwrap();
    let entry = registry.get(&n("planner")).unwrap();
    assert_eq!(entry.info.version, "2.0.0");
    assert_eq!(entry.deadline, Some(Duration::from_secs(3)));
    assert_eq!(registry.len(), 1);
}

#[test]
fn lookup_by_name_and_capability_is_sorted() {
    let registry = Registry::new();
    registry
        .register(
            module("zeta", &["summarize", "translate"], "1"),
            Registration::new(),
        )
        .unwrap();
    registry
        .register(module("alpha", &["summarize"], "1"), Registration::new())
        .unwrap();
    registry
        .register(module("mid", &["plan"], "1"), Registration::new())
        .unwrap();
    let names =
        |infos: Vec<Arc<ModuleInfo>>| infos.iter().map(|i| i.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(registry.list()), ["alpha", "mid", "zeta"]);
    assert_eq!(
        names(registry.find_by_capability(&"summarize".parse().unwrap())),
        ["alpha", "zeta"]
    );
    assert!(registry
        .find_by_capability(&"fly".parse().unwrap())
        .is_empty());
    assert_eq!(registry.names(), vec![n("alpha"), n("mid"), n("zeta")]);
    assert!(registry.get(&n("nobody")).is_none());
}

#[test]
fn unregistering_an_unknown_module_lists_the_registered_ones() {
    let registry = Registry::new();
    registry
        .register(module("alpha", &[], "1"), Registration::new())
        .unwrap();
    let err = registry.unregister(&n("beta")).unwrap_err();
    assert_eq!(
        err,
        RegistryError::NotRegistered {
            name: n("beta"),
            registered: vec![n("alpha")]
        }
    );
    assert!(err.to_string().contains("registered: alpha"));
    registry.unregister(&n("alpha")).unwrap();
    assert!(registry.is_empty());
}
