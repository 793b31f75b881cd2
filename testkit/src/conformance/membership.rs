//! The membership contract: what a store that several hubs share must keep, through its
//! [`Membership`](colloquy_storage::Membership), for every backend that offers one.
//! PostgreSQL's runs it today (`testkit/tests/postgres.rs`).
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() {
//! use colloquy_testkit::conformance::{membership, PostgresFactory};
//! membership::run_all(|| async {
//!     PostgresFactory::new("postgres://postgres@127.0.0.1:5432/test").unwrap()
//! })
//! .await
//! .assert_passed();
//! # }
//! ```

use std::future::Future;

use super::{Failure, Report, StoreFactory, CHECK_TIMEOUT};

mod checks {
    use std::{sync::Arc, time::Duration};

    use colloquy_core::Draft;
    use colloquy_storage::{ConversationStore, Membership, MessageRange, StoreError};
    use serde_json::json;

    // `ensure!`, `ensure_eq!` and `ensure_err!` are in scope from the parent module.
    use crate::conformance::{
        fixtures::{at, conversation, message_id, name, shared, talk},
        CheckResult, Failure, StoreFactory,
    };

    /// The store's membership, or a failure saying it has none.
    fn membership<S: ConversationStore>(store: &S) -> Result<&dyn Membership, Failure> {
        store
            .membership()
            .ok_or_else(|| Failure("this store offers no membership".into()))
    }

    /// Members that join get distinct identities and epochs that only grow; both are
    /// listed alive, with the link address each advertised, and each heartbeat says it is
    /// not fenced.
    pub async fn members_join_with_epochs_that_only_grow<F: StoreFactory>(f: &F) -> CheckResult {
        let (one, two) = (f.open().await?, f.open().await?);
        let first = membership(&one)?.join("first", None, &[]).await?;
        let second = membership(&two)?
            .join("second", Some("127.0.0.1:7070"), &[])
            .await?;
        ensure!(first.id != second.id, "two members, one id: {first:?}");
        ensure!(
            second.epoch > first.epoch,
            "epochs only grow: {first:?} then {second:?}"
        );
        ensure!(
            membership(&one)?.heartbeat(first, &[]).await?,
            "a live member's heartbeat is taken"
        );
        let listed = membership(&one)?
            .members(Duration::from_secs(60), Duration::from_secs(60))
            .await?;
        let alive: Vec<_> = listed
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.member)
            .collect();
        ensure_eq!(alive, vec![first, second], "alive, in join order");
        let addresses: Vec<_> = listed
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.address.as_deref())
            .collect();
        ensure_eq!(
            addresses,
            vec![None, Some("127.0.0.1:7070")],
            "each member's advertised link address"
        );
        Ok(())
    }

    /// A member that leaves is fenced at once and told so at its next heartbeat, and is
    /// listed as having left (not as lost).
    pub async fn a_member_that_leaves_is_fenced_and_listed_as_left<F: StoreFactory>(
        f: &F,
    ) -> CheckResult {
        let store = f.open().await?;
        let cluster = membership(&store)?;
        let member = cluster.join("leaving", None, &[]).await?;
        cluster.leave(member).await?;
        ensure!(
            !cluster.heartbeat(member, &[]).await?,
            "a member that left is fenced"
        );
        let listed = cluster
            .members(Duration::from_secs(60), Duration::from_secs(60))
            .await?;
        let record = listed
            .iter()
            .find(|m| m.member == member)
            .ok_or_else(|| Failure(format!("{member:?} is not listed: {listed:?}")))?;
        ensure!(
            record.fenced && record.left && !record.alive,
            "left, fenced, not alive: {record:?}"
        );
        Ok(())
    }

    /// A member silent past the timeout is fenced exactly once however many others look
    /// at the same moment, is listed as lost, and learns it at its next heartbeat.
    pub async fn a_silent_member_is_fenced_exactly_once<F: StoreFactory>(f: &F) -> CheckResult {
        let silent_store = f.open().await?;
        let silent = membership(&silent_store)?.join("silent", None, &[]).await?;
        // Silent on the server's clock: the fence below looks for 50 ms of silence.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let store = f.open().await?;
            tasks.spawn(async move {
                let fenced = match store.membership() {
                    Some(cluster) => cluster.fence_silent(Duration::from_millis(50)).await,
                    None => return Err(Failure("this store offers no membership".into())),
                };
                Ok::<_, Failure>(fenced?)
            });
        }
        let mut fenced = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            fenced.extend(joined.map_err(|e| Failure(format!("task failed: {e}")))??);
        }
        ensure_eq!(fenced, vec![silent], "fenced once, by one of four");
        let cluster = membership(&silent_store)?;
        ensure!(
            !cluster.heartbeat(silent, &[]).await?,
            "a fenced member's heartbeat is refused"
        );
        let listed = cluster
            .members(Duration::from_secs(60), Duration::from_secs(60))
            .await?;
        ensure!(
            listed
                .iter()
                .any(|m| m.member == silent && m.fenced && !m.left),
            "listed as lost: {listed:?}"
        );
        Ok(())
    }

    /// A handle writing as a member the others fenced writes nothing: no create, no
    /// append, no update, each refused as `Fenced`.
    pub async fn a_fenced_member_writes_nothing<F: StoreFactory>(f: &F) -> CheckResult {
        let store = f.open().await?;
        let cluster = membership(&store)?;
        let member = cluster.join("doomed", None, &[]).await?;
        cluster.write_as(Some(member));
        let mut c = conversation(&["a", "b"], at(0))?;
        store.create(&c).await?;
        let other = f.open().await?;
        membership(&other)?.leave(member).await?;

        let fresh = conversation(&["a", "b"], at(1_000))?;
        ensure_err!(
            store.create(&fresh).await,
            StoreError::Fenced { .. },
            "create"
        );
        let mut appended = c.clone();
        let batch = talk(&mut appended, 1, at(2_000))?;
        ensure_err!(
            store.append(&appended, &shared(&batch)).await,
            StoreError::Fenced { .. },
            "append"
        );
        c.pause(at(3_000))?;
        c.bump_version();
        ensure_err!(store.update(&c).await, StoreError::Fenced { .. }, "update");
        ensure_eq!(
            other.conversation(fresh.id()).await?,
            None,
            "nothing created"
        );
        ensure_eq!(
            other.messages(c.id(), MessageRange::All).await?,
            vec![],
            "nothing appended"
        );
        let stored = other
            .conversation(c.id())
            .await?
            .ok_or_else(|| Failure("the conversation created before is gone".into()))?;
        ensure_eq!(stored.version(), 0, "nothing updated");
        Ok(())
    }

    /// A conversation a fenced member left in an exchange (its request stored, no reply)
    /// is claimed by exactly one of the members that look for it at once.
    pub async fn orphans_are_claimed_exactly_once<F: StoreFactory>(f: &F) -> CheckResult {
        let dead_store = f.open().await?;
        let dead_cluster = membership(&dead_store)?;
        let dead = dead_cluster.join("dead", None, &[]).await?;
        dead_cluster.write_as(Some(dead));
        let mut c = conversation(&["a", "b"], at(0))?;
        dead_store.create(&c).await?;
        let request = c.begin_turn(
            Draft::request(name("a")?, name("b")?, json!("left behind")),
            message_id(at(1_000)),
            at(1_000),
            at(61_000),
            None,
        )?;
        c.bump_version();
        dead_store.append(&c, &shared(&[request])).await?;
        dead_cluster.leave(dead).await?;

        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..4 {
            let store = Arc::new(f.open().await?);
            tasks.spawn(async move {
                let claimed = match store.membership() {
                    Some(cluster) => {
                        let me = cluster.join(&format!("survivor-{n}"), None, &[]).await?;
                        cluster.claim_orphans(me, 10).await?
                    }
                    None => return Err(Failure("this store offers no membership".into())),
                };
                Ok::<_, Failure>(claimed)
            });
        }
        let mut claimed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            claimed.extend(joined.map_err(|e| Failure(format!("task failed: {e}")))??);
        }
        ensure_eq!(claimed, vec![c.id()], "claimed once, by one of four");
        Ok(())
    }

    /// Each turn names the member whose write stored it, with the name it joined under;
    /// a range narrows them as it narrows the messages; turns written as no member are left
    /// out.
    pub async fn each_turn_names_the_member_that_wrote_it<F: StoreFactory>(f: &F) -> CheckResult {
        let (one, two, outside) = (f.open().await?, f.open().await?, f.open().await?);
        let first = membership(&one)?.join("hub-one", None, &[]).await?;
        membership(&one)?.write_as(Some(first));
        let second = membership(&two)?.join("hub-two", None, &[]).await?;
        membership(&two)?.write_as(Some(second));
        let mut c = conversation(&["a", "b"], at(0))?;
        one.create(&c).await?;
        let batch = talk(&mut c, 2, at(1_000))?;
        one.append(&c, &shared(&batch)).await?;
        let batch = talk(&mut c, 1, at(3_000))?;
        two.append(&c, &shared(&batch)).await?;
        let batch = talk(&mut c, 1, at(4_000))?;
        one.append(&c, &shared(&batch)).await?;
        let batch = talk(&mut c, 1, at(5_000))?;
        outside.append(&c, &shared(&batch)).await?;

        let cluster = membership(&outside)?;
        let writers = cluster.turn_writers(c.id(), MessageRange::All).await?;
        let seen: Vec<_> = writers
            .iter()
            .map(|w| (w.turn, w.member, w.name.as_deref()))
            .collect();
        ensure_eq!(
            seen,
            vec![
                (1, first, Some("hub-one")),
                (2, first, Some("hub-one")),
                (3, second, Some("hub-two")),
                (4, first, Some("hub-one")),
            ],
            "every turn's writer, turn 5 (written as no member) left out"
        );
        let turns = |writers: Vec<colloquy_storage::TurnWriter>| -> Vec<u64> {
            writers.iter().map(|w| w.turn).collect()
        };
        let ranges = [
            (MessageRange::Turns { first: 2, last: 3 }, vec![2, 3]),
            (MessageRange::After(3), vec![4]),
            (MessageRange::Last(3), vec![3, 4]),
        ];
        for (range, expected) in ranges {
            ensure_eq!(
                turns(cluster.turn_writers(c.id(), range).await?),
                expected,
                "{range:?}"
            );
        }
        let unknown = conversation(&["a", "b"], at(9_000))?;
        ensure_eq!(
            cluster
                .turn_writers(unknown.id(), MessageRange::All)
                .await?,
            vec![],
            "an unknown conversation has none"
        );
        Ok(())
    }
}

suite!(
    members_join_with_epochs_that_only_grow,
    a_member_that_leaves_is_fenced_and_listed_as_left,
    a_silent_member_is_fenced_exactly_once,
    a_fenced_member_writes_nothing,
    orphans_are_claimed_exactly_once,
    each_turn_names_the_member_that_wrote_it,
);
