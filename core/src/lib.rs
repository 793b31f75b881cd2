//! The pure model of colloquy: names, ids, messages and the conversation state machine.
//!
//! Everything a turn needs to be decided lives here: [`ModuleName`] validation, UUID v7
//! [`ConversationId`]s and [`MessageId`]s, [`Message`] and [`Draft`], and the
//! [`Conversation`] state machine with its [`Status`], [`Phase`] and [`Intent`], turn
//! acceptance, idle expiry, context patches ([`merge_patch`]), handshake outcomes and
//! participant transfer. [`merge_schemas`] finds the common ground of two modules' schemas.
//!
//! # What this crate deliberately does not do
//!
//! - **No clock reads.** Every transition takes `now: Timestamp`; idle expiry is the pure
//!   function [`Conversation::expired`]. The runtime supplies time (tokio's, so tests can
//!   pause it).
//! - **No IO and no async.** No tokio, no files, no network: persistence belongs to
//!   `colloquy-storage`, delivery to `colloquy-router`.
//! - **No id minting from the system clock or an RNG.** Ids are built from parts the caller
//!   provides ([`ConversationId::from_parts`]).
//! - **No panics.** Every refusal is a [`CoreError`] and leaves state unchanged.

/// Defines a fieldless enum with its stable lowercase names: `ALL`, `as_str`, `FromStr`
/// (naming the allowed values on error), `Display` and snake_case serde.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The stable lowercase name used in storage and output.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    CoreError::InvalidState {
                        detail: format!(
                            "unknown {} {s:?}; expected one of {}",
                            $what,
                            [$($text),+].join(", ")
                        ),
                    }
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod change;
mod content;
mod context;
mod conversation;
mod error;
mod id;
mod message;
mod module_info;
mod name;
mod schema;
mod status;
mod time;
mod turn;

pub use change::StateChange;
pub use content::{check_content, check_object};
pub use context::{json_depth_exceeds, merge_patch, MAX_JSON_DEPTH};
pub use conversation::{
    Conversation, ConversationParts, HandshakeOutcome, InFlight, Intent, Phase, Status, StatusKind,
};
pub use error::CoreError;
pub use id::{ConversationId, MessageId};
pub use message::{Draft, Message, MessageKind};
pub use module_info::ModuleInfo;
pub use name::{Capability, ModuleName, MAX_NAME_LEN};
pub use schema::merge_schemas;
pub use time::{duration_millis, Timestamp};
pub use turn::TurnOutcome;

/// JSON values and objects, re-exported so users need not name serde_json's version.
pub use serde_json::{Map as JsonMap, Value as JsonValue};
