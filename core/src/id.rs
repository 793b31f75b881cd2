//! Time-ordered ids: [`ConversationId`] and [`MessageId`].
//!
//! Both are UUID v7, so ids made later sort later and B-tree inserts stay local. Core never
//! mints an id from the system clock: [`from_parts`](ConversationId::from_parts) takes the
//! time and the random bytes from the caller.

use std::{fmt, str::FromStr};

use uuid::{Builder, Uuid, Version};

use crate::{
    error::{shorten, CoreError},
    Timestamp,
};

fn check_v7(kind: &'static str, uuid: Uuid) -> Result<Uuid, CoreError> {
    if uuid.get_version() == Some(Version::SortRand) && uuid.get_variant() == uuid::Variant::RFC4122
    {
        Ok(uuid)
    } else {
        Err(CoreError::InvalidId {
            kind,
            input: uuid.hyphenated().to_string(),
            reason: format!(
                "it is a version {} UUID, not version 7",
                uuid.get_version_num()
            ),
        })
    }
}

fn parse(kind: &'static str, input: &str) -> Result<Uuid, CoreError> {
    let uuid = Uuid::try_parse(input).map_err(|e| CoreError::InvalidId {
        kind,
        input: shorten(input),
        reason: e.to_string(),
    })?;
    check_v7(kind, uuid)
}

macro_rules! v7_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// Builds an id from a time and 10 random bytes (74 of their bits are used).
            pub fn from_parts(now: Timestamp, random: [u8; 10]) -> Self {
                Self(Builder::from_unix_timestamp_millis(now.as_millis(), &random).into_uuid())
            }

            /// Accepts `uuid` if it is a version 7 UUID.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, CoreError> {
                check_v7($kind, uuid).map(Self)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The creation time encoded in the id, in milliseconds.
            pub fn timestamp(&self) -> Timestamp {
                let millis = self
                    .0
                    .get_timestamp()
                    .map(|ts| {
                        let (secs, nanos) = ts.to_unix();
                        secs.saturating_mul(1000).saturating_add(u64::from(nanos / 1_000_000))
                    })
                    .unwrap_or(0);
                Timestamp::from_millis(millis)
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                parse($kind, s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.0, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let uuid = <Uuid as serde::Deserialize>::deserialize(d)?;
                Self::from_uuid(uuid).map_err(serde::de::Error::custom)
            }
        }
    };
}

v7_id!(
    /// Identifies a conversation (UUID v7).
    ///
    /// ```
    /// use colloquy_core::{ConversationId, Timestamp};
    /// let id = ConversationId::from_parts(Timestamp::from_millis(1_700_000_000_000), [7; 10]);
    /// assert_eq!(id.to_string().parse::<ConversationId>()?, id);
    /// assert!("not-an-id".parse::<ConversationId>().is_err());
    /// # Ok::<(), colloquy_core::CoreError>(())
    /// ```
    ConversationId,
    "conversation id"
);

v7_id!(
    /// Identifies a message (UUID v7).
    MessageId,
    "message id"
);
