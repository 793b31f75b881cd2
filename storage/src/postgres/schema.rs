//! The PostgreSQL schema and its migrations: a version table, applied in one transaction
//! under an advisory lock, so two hubs starting together never race; a newer schema than
//! this build knows is refused.

use tokio_postgres::Client;

use super::{PostgresOptions, Server};
use crate::StoreError;

/// One entry per schema version; `MIGRATIONS[i]` moves the schema from version `i` to
/// `i + 1`. Append only: never edit a shipped migration. Tables are created in the store's
/// schema (first on the connection's `search_path`).
const MIGRATIONS: &[&str] = &[
    // Version 1: conversations (participants as an array, searched through a GIN index),
    // messages (one per turn, the id the idempotency key), module registrations. Times are
    // milliseconds since the epoch, as in every backend, so that all agree to the
    // millisecond. Names compare bytewise (COLLATE "C"), as Rust's strings do. Message
    // content is `json`, kept as the exact text written: `jsonb` refuses the escape
    // \u0000 that a message may carry, and every backend returns content exactly. The
    // conversation's context and metadata are `jsonb`, the state one may query.
    r#"
    CREATE TABLE conversations (
        id              uuid PRIMARY KEY,
        status          text NOT NULL,
        failure_reason  text,
        phase           text NOT NULL,
        intent          text NOT NULL,
        participants    text[] NOT NULL,
        turn_count      bigint NOT NULL,
        started_at      bigint NOT NULL,
        last_activity   bigint NOT NULL,
        ended_at        bigint,
        idle_timeout_ms bigint NOT NULL,
        max_turns       bigint,
        context         jsonb NOT NULL,
        metadata        jsonb NOT NULL,
        version         bigint NOT NULL,
        busy_until      bigint
    );
    CREATE INDEX conversations_by_start ON conversations (started_at DESC, id DESC);
    CREATE INDEX conversations_by_status ON conversations (status, started_at DESC, id DESC);
    CREATE INDEX conversations_by_end ON conversations (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX conversations_by_participant ON conversations USING gin (participants);

    CREATE TABLE messages (
        id              uuid PRIMARY KEY,
        conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        turn            bigint NOT NULL,
        source          text NOT NULL,
        target          text NOT NULL,
        kind            text NOT NULL,
        content         json NOT NULL,
        in_reply_to     uuid,
        sent_at         bigint NOT NULL,
        UNIQUE (conversation_id, turn)
    );

    CREATE TABLE modules (
        name           text COLLATE "C" PRIMARY KEY,
        info           jsonb NOT NULL,
        registered_at  bigint NOT NULL
    );
    "#,
    // Version 2: the hubs sharing the schema (membership, see ARCHITECTURE.md "Cluster"):
    // one row per run of a hub, its fencing epoch from a sequence, heartbeats on the
    // server's clock.
    r#"
    CREATE SEQUENCE hub_epochs;
    CREATE TABLE hubs (
        id            uuid NOT NULL,
        epoch         bigint NOT NULL,
        name          text NOT NULL,
        joined_at     timestamptz NOT NULL DEFAULT now(),
        heartbeat_at  timestamptz NOT NULL DEFAULT now(),
        fenced        boolean NOT NULL DEFAULT false,
        modules       jsonb NOT NULL,
        PRIMARY KEY (id, epoch)
    );
    CREATE INDEX hubs_unfenced ON hubs (heartbeat_at) WHERE NOT fenced;
    "#,
    // Version 3: deliveries of turns to modules another hub hosts, keyed by the request's
    // message id; a claim names the member (id and epoch) that holds it.
    r#"
    CREATE TABLE deliveries (
        message_id     uuid PRIMARY KEY,
        module         text NOT NULL,
        turn           jsonb NOT NULL,
        deadline_ms    bigint NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        claimed_id     uuid,
        claimed_epoch  bigint,
        answer         jsonb
    );
    CREATE INDEX deliveries_pending ON deliveries (module, created_at) WHERE answer IS NULL;
    "#,
    // Version 4: the member (id and epoch) that wrote a conversation last. While the
    // conversation is busy, that is the exchange's holder: others wait for it while it is
    // not fenced, and take the exchange over once it is. Busy conversations are found by
    // their own small index.
    r#"
    ALTER TABLE conversations ADD COLUMN written_by_id uuid, ADD COLUMN written_by_epoch bigint;
    CREATE INDEX conversations_busy ON conversations (written_by_id, written_by_epoch)
        WHERE busy_until IS NOT NULL AND ended_at IS NULL;
    "#,
    // Version 5: what each write changed in a conversation's shared state (context,
    // participants, phase, status: a `StateChange`), keyed by the version written.
    r#"
    CREATE TABLE state_changes (
        conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        version         bigint NOT NULL,
        change          jsonb NOT NULL,
        PRIMARY KEY (conversation_id, version)
    );
    "#,
    // Version 6: when a hub left cleanly (shut down), so that a hub that left and one the
    // others fenced after it fell silent (killed, paused, cut off) are told apart.
    r#"
    ALTER TABLE hubs ADD COLUMN left_at timestamptz;
    "#,
    // Version 7: where each hub's cluster link listens (`host:port`), so that turns to its
    // modules go hub to hub; NULL for a hub without a link (older hubs during an upgrade).
    r#"
    ALTER TABLE hubs ADD COLUMN address text;
    "#,
    // Version 8: the conversations a member writes, found by an index that every turn
    // leaves as it is. The index of version 4 was partial on `busy_until`, which each
    // request sets and each reply clears, so no update of a conversation row could be HOT
    // (one in place, touching no index): every turn rewrote all five indexes of the table,
    // the GIN of participants among them. This one changes only when the writer or the
    // end changes; claims start from the fenced members and read their open conversations.
    r#"
    DROP INDEX conversations_busy;
    CREATE INDEX conversations_by_writer ON conversations (written_by_id, written_by_epoch)
        WHERE ended_at IS NULL;
    "#,
    // Version 9: the member (id and epoch) whose write stored each turn, so that a reader
    // can tell which hub wrote it. NULL outside a cluster (and for turns stored before this
    // version); no index: it is read with its conversation's messages only.
    r#"
    ALTER TABLE messages ADD COLUMN written_by_id uuid, ADD COLUMN written_by_epoch bigint;
    "#,
];

/// The schema version this build writes and understands.
pub const POSTGRES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates the schema if needed and brings it to [`POSTGRES_SCHEMA_VERSION`], in one
/// transaction under a transaction-level advisory lock keyed by the schema's name: a
/// second hub starting at the same moment waits, then finds the work done.
pub(crate) async fn migrate(
    client: &mut Client,
    options: &PostgresOptions,
    server: &Server,
) -> Result<(), StoreError> {
    let err = |e| server.err(e);
    let schema = &options.schema;
    let tx = client.transaction().await.map_err(err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('colloquy migrations ' || $1, 0))",
        &[schema],
    )
    .await
    .map_err(err)?;
    if !options.create_if_missing {
        let made: bool = tx
            .query_one(
                "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL",
                &[schema],
            )
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        if !made {
            return Err(StoreError::DatabaseMissing {
                path: format!("{} (schema {schema})", server.address).into(),
            });
        }
    }
    // The name is checked to be a plain identifier (see `PostgresOptions::schema`), so
    // quoting it is enough.
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
        .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (
             version    bigint NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await
    .map_err(err)?;
    let found: i64 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_version"),
            &[],
        )
        .await
        .map_err(err)?
        .try_get(0)
        .map_err(err)?;
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            database: format!("{} (schema {schema})", server.address),
            found,
            supported: POSTGRES_SCHEMA_VERSION,
        });
    }
    if found == 0 {
        let foreign: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_version'",
                &[schema],
            )
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        if foreign > 0 {
            return Err(StoreError::Backend {
                backend: "postgres",
                message: format!(
                    "schema {schema} holds {foreign} tables that colloquy did not create; give the store a schema of its own"
                ),
            });
        }
    }
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))
        .await
        .map_err(err)?;
    for (done, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(usize::MAX))
    {
        tx.batch_execute(sql).await.map_err(err)?;
        let version = i64::try_from(done + 1).unwrap_or(i64::MAX);
        tx.execute(
            &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}
