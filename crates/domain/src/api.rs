//! The data APIs a token can be allowed to call.

use std::fmt;
use std::str::FromStr;

/// One of the data APIs that ask latchkey about tokens.
///
/// The variants are in alphabetical order, which is also the order in which
/// sets of them are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// The Imports API: writes data into a destination table.
    Imports,
    /// The Location Data Services API (geocoding, routing…): needs no grant.
    Lds,
    /// The Maps API: tables, tilesets and queries rendered as maps.
    Maps,
    /// The SQL API: runs queries.
    Sql,
}

impl Api {
    /// Every API, in alphabetical order.
    pub const ALL: [Api; 4] = [Api::Imports, Api::Lds, Api::Maps, Api::Sql];

    /// The API's name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Api::Imports => "imports",
            Api::Lds => "lds",
            Api::Maps => "maps",
            Api::Sql => "sql",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of `sql`, `maps`, `imports`, `lds`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown API; expected one of sql, maps, imports, lds")]
pub struct UnknownApi;

impl FromStr for Api {
    type Err = UnknownApi;

    /// Names are matched exactly: `SQL` is not an API name, so that a typo
    /// is reported instead of guessed at.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Api::ALL.into_iter().find(|api| api.as_str() == name).ok_or(UnknownApi)
    }
}

/// A set of APIs, possibly empty. Iterates in alphabetical order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ApiSet(u8);

impl ApiSet {
    /// The empty set.
    #[must_use]
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Adds `api`; adding it twice is the same as once.
    pub fn insert(&mut self, api: Api) {
        self.0 |= api.bit();
    }

    /// Whether `api` is in the set.
    #[must_use]
    pub const fn contains(self, api: Api) -> bool {
        self.0 & api.bit() != 0
    }

    /// Whether the set has no API.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many APIs the set has.
    #[must_use]
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The APIs in alphabetical order.
    pub fn iter(self) -> impl Iterator<Item = Api> {
        Api::ALL.into_iter().filter(move |api| self.contains(*api))
    }
}

impl FromIterator<Api> for ApiSet {
    fn from_iter<I: IntoIterator<Item = Api>>(iter: I) -> Self {
        let mut set = ApiSet::empty();
        for api in iter {
            set.insert(api);
        }
        set
    }
}

impl fmt::Debug for ApiSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The APIs a token may call.
///
/// Invariant: not empty (V1), and when `imports` is present it is alone (V2):
/// the Imports API writes data and its grants name destinations, so sharing a
/// token with read APIs would mix two meanings of a grant.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedApis(ApiSet);

/// Why a set of APIs cannot be a token's allowed APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllowedApisError {
    #[error("at least one API is required")]
    Empty,
    #[error("imports cannot be combined with other APIs")]
    ImportsNotAlone,
}

impl AllowedApis {
    /// Checks V1 and V2.
    ///
    /// # Errors
    /// [`AllowedApisError`] when the set is empty or mixes `imports` with
    /// another API.
    pub fn new(set: ApiSet) -> Result<Self, AllowedApisError> {
        if set.is_empty() {
            Err(AllowedApisError::Empty)
        } else if set.contains(Api::Imports) && set.len() > 1 {
            Err(AllowedApisError::ImportsNotAlone)
        } else {
            Ok(Self(set))
        }
    }

    /// Whether `api` is allowed.
    #[must_use]
    pub const fn contains(self, api: Api) -> bool {
        self.0.contains(api)
    }

    /// The allowed APIs in alphabetical order.
    pub fn iter(self) -> impl Iterator<Item = Api> {
        self.0.iter()
    }

    /// The underlying set.
    #[must_use]
    pub const fn set(self) -> ApiSet {
        self.0
    }
}

impl fmt::Debug for AllowedApis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for api in Api::ALL {
            assert_eq!(api.as_str().parse::<Api>(), Ok(api));
        }
        for bad in ["", "SQL", "Maps", " sql", "import", "tiles"] {
            assert_eq!(bad.parse::<Api>(), Err(UnknownApi), "{bad:?}");
        }
    }

    #[test]
    fn sets_fold_duplicates_and_iterate_alphabetically() {
        let set: ApiSet = [Api::Sql, Api::Maps, Api::Sql].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![Api::Maps, Api::Sql]);
    }

    #[test]
    fn allowed_apis_rules() {
        use Api::*;
        let cases: &[(&[Api], Result<(), AllowedApisError>)] = &[
            (&[], Err(AllowedApisError::Empty)),
            (&[Sql], Ok(())),
            (&[Maps, Sql, Lds], Ok(())),
            (&[Imports], Ok(())),
            (&[Imports, Imports], Ok(())),
            (&[Imports, Maps], Err(AllowedApisError::ImportsNotAlone)),
            (&[Imports, Lds], Err(AllowedApisError::ImportsNotAlone)),
            (&[Sql, Imports], Err(AllowedApisError::ImportsNotAlone)),
        ];
        for (apis, expected) in cases {
            let got = AllowedApis::new(apis.iter().copied().collect()).map(|_| ());
            assert_eq!(&got, expected, "{apis:?}");
        }
    }
}
