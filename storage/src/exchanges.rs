//! [`ModuleExchanges`]: where the time went, per module: the requests addressed to it, those
//! that ended without a reply, and how long the answered ones took, as exact counts per
//! time bucket (so that every backend agrees exactly, and percentiles read off the buckets).

use colloquy_core::{Message, MessageKind, ModuleName};
use serde::{Deserialize, Serialize};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::StoreError;

/// The upper bounds (exclusive, in milliseconds) of the time buckets of
/// [`ModuleExchanges::buckets`]; the last bucket holds everything longer.
pub const EXCHANGE_BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

/// The requests addressed to one module in a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleExchanges {
    /// The module.
    pub module: ModuleName,
    /// Requests addressed to it.
    pub requests: u64,
    /// Of which no reply followed (the handler failed, timed out or was cancelled, or the
    /// request is still waiting).
    pub unanswered: u64,
    /// The answered ones by time from request stored to reply stored: one count per bucket
    /// of [`EXCHANGE_BUCKETS_MS`], and a last one for longer.
    pub buckets: [u64; 15],
}

impl ModuleExchanges {
    /// No requests yet, for `module`.
    pub fn new(module: ModuleName) -> Self {
        Self {
            module,
            requests: 0,
            unanswered: 0,
            buckets: [0; 15],
        }
    }

    /// The bucket of an answer that took `ms` milliseconds.
    pub fn bucket_of(ms: u64) -> usize {
        EXCHANGE_BUCKETS_MS
            .iter()
            .position(|bound| ms < *bound)
            .unwrap_or(EXCHANGE_BUCKETS_MS.len())
    }

    /// The upper bound (milliseconds) of the bucket that holds the `fraction` (0 to 1)
    /// quantile of the answered requests; `None` when none was answered or it is in the
    /// last, unbounded bucket.
    pub fn percentile(&self, fraction: f64) -> Option<u64> {
        let answered: u64 = self.buckets.iter().sum();
        if answered == 0 {
            return None;
        }
        // The rank of the quantile, from 1.
        let rank = ((answered as f64) * fraction.clamp(0.0, 1.0))
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return EXCHANGE_BUCKETS_MS.get(bucket).copied();
            }
        }
        None
    }

    /// Adds a row a SQL backend counted: `count` requests in `bucket` (`-1`: unanswered).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn add_row(&mut self, bucket: i64, count: i64) -> Result<(), StoreError> {
        let count = u64::try_from(count).map_err(|_| StoreError::Corrupt {
            location: format!("exchanges of {}", self.module),
            detail: format!("negative count {count}"),
        })?;
        self.requests += count;
        match usize::try_from(bucket) {
            Ok(b) if b < self.buckets.len() => self.buckets[b] += count,
            _ if bucket == -1 => self.unanswered += count,
            _ => {
                return Err(StoreError::Corrupt {
                    location: format!("exchanges of {}", self.module),
                    detail: format!("bucket {bucket} out of range"),
                })
            }
        }
        Ok(())
    }
}

/// Counts exchanges from messages in memory, one conversation at a time: what the memory
/// store computes, and what a reader computes over the conversations it may see.
#[derive(Debug, Default)]
pub struct ExchangeTally {
    modules: std::collections::BTreeMap<ModuleName, ModuleExchanges>,
}

impl ExchangeTally {
    /// Counts the requests of one conversation's `messages` (in turn order) that `keep`
    /// accepts (a time range on the request), each with its reply if one follows.
    pub fn add<'a>(
        &mut self,
        messages: impl IntoIterator<Item = &'a Message>,
        keep: impl Fn(&Message) -> bool,
    ) {
        let messages: Vec<&Message> = messages.into_iter().collect();
        for (i, request) in messages.iter().enumerate() {
            if request.kind != MessageKind::Request || !keep(request) {
                continue;
            }
            let entry = self
                .modules
                .entry(request.target.clone())
                .or_insert_with(|| ModuleExchanges::new(request.target.clone()));
            entry.requests += 1;
            // The reply is the next turn: the exchange holds the conversation's turn lock.
            match messages
                .get(i + 1)
                .filter(|reply| reply.in_reply_to == Some(request.id))
            {
                Some(reply) => {
                    let ms = reply
                        .sent_at
                        .as_millis()
                        .saturating_sub(request.sent_at.as_millis());
                    entry.buckets[ModuleExchanges::bucket_of(ms)] += 1;
                }
                None => entry.unanswered += 1,
            }
        }
    }

    /// The modules, sorted by name.
    pub fn finish(self) -> Vec<ModuleExchanges> {
        self.modules.into_values().collect()
    }
}

/// The SQL both backends run: each request with its reply (the next turn, answering it),
/// bucketed; `-1` for no reply. The caller adds the time range on `q.sent_at` and the
/// `GROUP BY`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn exchanges_sql() -> String {
    let mut bucket = String::from("CASE WHEN r.id IS NULL THEN -1");
    for (i, bound) in EXCHANGE_BUCKETS_MS.iter().enumerate() {
        bucket.push_str(&format!(" WHEN r.sent_at - q.sent_at < {bound} THEN {i}"));
    }
    bucket.push_str(&format!(" ELSE {} END", EXCHANGE_BUCKETS_MS.len()));
    format!(
        "SELECT q.target, CAST({bucket} AS BIGINT) AS bucket, count(*) FROM messages q \
         LEFT JOIN messages r ON r.conversation_id = q.conversation_id \
         AND r.turn = q.turn + 1 AND r.in_reply_to = q.id \
         WHERE q.kind = 'request'"
    )
}

/// The tail of [`exchanges_sql`] after the time range.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const EXCHANGES_GROUP: &str = " GROUP BY q.target, bucket ORDER BY q.target";

/// Folds the `(module, bucket, count)` rows (grouped by module) into one entry per module,
/// sorted by name (as Rust orders names, whatever the database's collation).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn fold_rows(
    rows: impl IntoIterator<Item = Result<(String, i64, i64), StoreError>>,
) -> Result<Vec<ModuleExchanges>, StoreError> {
    let mut out: Vec<ModuleExchanges> = Vec::new();
    for row in rows {
        let (module, bucket, count) = row?;
        if out.last().is_none_or(|last| last.module.as_str() != module) {
            let name = module.parse().map_err(|e| StoreError::Corrupt {
                location: "messages".into(),
                detail: format!("bad target {module:?}: {e}"),
            })?;
            out.push(ModuleExchanges::new(name));
        }
        if let Some(last) = out.last_mut() {
            last.add_row(bucket, count)?;
        }
    }
    out.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_off_the_buckets() {
        let mut m = ModuleExchanges::new("m".parse().unwrap());
        assert_eq!(m.percentile(0.5), None);
        // 90 answers under 5 ms, 10 between 250 and 500 ms.
        m.buckets[ModuleExchanges::bucket_of(3)] = 90;
        m.buckets[ModuleExchanges::bucket_of(300)] = 10;
        assert_eq!(m.percentile(0.5), Some(5));
        assert_eq!(m.percentile(0.9), Some(5));
        assert_eq!(m.percentile(0.95), Some(500));
        assert_eq!(ModuleExchanges::bucket_of(0), 0);
        assert_eq!(ModuleExchanges::bucket_of(30_000), 14);
        assert_eq!(m.percentile(1.0), Some(500));
    }
}
