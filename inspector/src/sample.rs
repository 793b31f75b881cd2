//! The health page's distributions: the newest conversations they cover, the buckets they
//! are counted in, and the conversations behind one bar (the list's `turns=` and
//! `lasted=` filters), so that a bar and the list it leads to count the same ones.

use std::time::Duration;

use colloquy_runtime::{Conversation, Hub, ListFilter, Timestamp};

use crate::{auth::Reader, view::Bar, InspectorError};

/// How many of the newest conversations the distributions cover.
pub(crate) const SAMPLE: usize = 1_000;

/// One bar of a distribution: the values below `below` (and at least the previous
/// bucket's bound), `key` in the list's query, `label` on the page.
pub(crate) struct Bucket<T> {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) below: T,
}

const fn bucket<T>(key: &'static str, label: &'static str, below: T) -> Bucket<T> {
    Bucket { key, label, below }
}

/// Turns per conversation.
pub(crate) const TURNS: [Bucket<u64>; 6] = [
    bucket("0", "0", 1),
    bucket("1-2", "1-2", 3),
    bucket("3-5", "3-5", 6),
    bucket("6-10", "6-10", 11),
    bucket("11-50", "11-50", 51),
    bucket("51-", "more than 50", u64::MAX),
];

/// How long a conversation lasted (until now, while it goes on).
pub(crate) const DURATIONS: [Bucket<Duration>; 6] = [
    bucket("0s-1s", "under 1 s", Duration::from_secs(1)),
    bucket("1s-10s", "1-10 s", Duration::from_secs(10)),
    bucket("10s-1m", "10 s-1 min", Duration::from_secs(60)),
    bucket("1m-10m", "1-10 min", Duration::from_secs(600)),
    bucket("10m-1h", "10 min-1 h", Duration::from_secs(3_600)),
    bucket("1h-", "over 1 h", Duration::MAX),
];

/// The bucket `value` falls in: the first whose bound it is below, else the last.
fn bucket_of<T: PartialOrd>(buckets: &[Bucket<T>], value: &T) -> usize {
    buckets
        .iter()
        .position(|b| *value < b.below)
        .unwrap_or(buckets.len().saturating_sub(1))
}

/// How long `conversation` lasted, as of `now`.
pub(crate) fn lasted(conversation: &Conversation, now: Timestamp) -> Duration {
    conversation
        .ended_at()
        .unwrap_or(now)
        .saturating_duration_since(conversation.started_at())
}

/// How many of `values` fall in each bucket, as bars scaled to the largest, each linking to
/// the list of its conversations (`/inspect?{param}={key}`).
pub(crate) fn distribution<T: PartialOrd>(
    values: impl Iterator<Item = T>,
    buckets: &[Bucket<T>],
    param: &str,
) -> Vec<Bar> {
    let mut counts = vec![0u64; buckets.len()];
    for value in values {
        if let Some(count) = counts.get_mut(bucket_of(buckets, &value)) {
            *count += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    buckets
        .iter()
        .zip(counts)
        .map(|(b, n)| {
            let mut bar = Bar::scaled(b.label, n, max);
            bar.link = Some(format!("/inspect?{param}={}", b.key));
            bar
        })
        .collect()
}

/// Which bucket of `buckets` the list asked for by its `key` (`None`: no such filter).
pub(crate) fn asked<T>(
    buckets: &[Bucket<T>],
    key: &str,
    param: &str,
) -> Result<Option<usize>, InspectorError> {
    if key.is_empty() {
        return Ok(None);
    }
    match buckets.iter().position(|b| b.key == key) {
        Some(i) => Ok(Some(i)),
        None => Err(InspectorError::BadRequest {
            reason: format!(
                "{param} {key:?} is not one of the health page's bars: use one of {}",
                buckets.iter().map(|b| b.key).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Whether `conversation` is behind the bars asked for (`None`: any).
pub(crate) fn behind(
    conversation: &Conversation,
    now: Timestamp,
    turns: Option<usize>,
    durations: Option<usize>,
) -> bool {
    turns.is_none_or(|i| bucket_of(&TURNS, &conversation.turn_count()) == i)
        && durations.is_none_or(|i| bucket_of(&DURATIONS, &lasted(conversation, now)) == i)
}

/// The newest [`SAMPLE`] conversations (the reader's own, for a reader with a token), read
/// a page at a time.
pub(crate) async fn newest(
    hub: &Hub,
    reader: &Reader,
) -> Result<Vec<Conversation>, InspectorError> {
    let mut filter = ListFilter::new().limit(colloquy_runtime::MAX_PAGE);
    if let Some(me) = reader.participant() {
        filter = filter.participant(me.clone());
    }
    let mut sample = Vec::new();
    while sample.len() < SAMPLE {
        let page = hub.reader().list(&filter).await?;
        sample.extend(page.conversations);
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => break,
        }
    }
    sample.truncate(SAMPLE);
    Ok(sample)
}
