//! Validated names: [`ModuleName`] and [`Capability`].

use std::{fmt, str::FromStr, sync::Arc};

use crate::error::{shorten, CoreError};

/// The longest name accepted, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// True for the characters a name may contain: `[A-Za-z0-9_.-]`.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn validate(kind: &'static str, input: &str) -> Result<(), CoreError> {
    let reason = if input.is_empty() {
        "it is empty".to_owned()
    } else if let Some(bad) = input.chars().find(|c| !is_name_char(*c)) {
        format!("it contains {bad:?}")
    } else if input.len() > MAX_NAME_LEN {
        // Only ASCII is left at this point, so bytes are characters.
        format!("it is {} characters long", input.len())
    } else {
        return Ok(());
    };
    Err(CoreError::InvalidName {
        kind,
        input: shorten(input),
        reason,
    })
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (a reference count): names travel on every message.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `input`: 1 to 128 characters of `[A-Za-z0-9_.-]`.
            pub fn new(input: &str) -> Result<Self, CoreError> {
                validate($kind, input)?;
                Ok(Self(Arc::from(input)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// `names` as one comma-separated line (`none` when empty), for messages that
            /// list them (registered modules, participants).
            pub fn join(names: &[Self]) -> String {
                if names.is_empty() {
                    return "none".into();
                }
                names.iter().map(Self::as_str).collect::<Vec<_>>().join(", ")
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = CoreError;
            fn try_from(s: &str) -> Result<Self, CoreError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = CoreError;
            fn try_from(s: String) -> Result<Self, CoreError> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.as_str().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::new(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// The name of a module: 1 to 128 characters of `[A-Za-z0-9_.-]`.
    ///
    /// ```
    /// use colloquy_core::ModuleName;
    /// let name: ModuleName = "extractor.v2".parse()?;
    /// assert_eq!(name.as_str(), "extractor.v2");
    /// assert!("two words".parse::<ModuleName>().is_err());
    /// # Ok::<(), colloquy_core::CoreError>(())
    /// ```
    ModuleName,
    "module name"
);

validated_name!(
    /// Something a module can do (`"summarize"`, `"schema.validate"`), with the alphabet and
    /// length of a [`ModuleName`].
    Capability,
    "capability"
);

impl Capability {
    /// [`ModuleInfo::CALLER_CAPABILITY`](crate::ModuleInfo::CALLER_CAPABILITY) as a
    /// capability.
    pub(crate) fn caller() -> Self {
        // The constant is 15 characters of the name alphabet; built directly so that no
        // fallible parse is needed for it.
        Self(Arc::from(crate::ModuleInfo::CALLER_CAPABILITY))
    }
}
