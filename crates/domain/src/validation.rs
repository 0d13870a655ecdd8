//! Validation of a token's fields on create and update (SPEC §4): every
//! violation is reported at once, each with the field it concerns, so that a
//! form can show them all next to their fields in one round trip.
//!
//! Also the warnings a valid token carries: things that are allowed but
//! probably not what the author meant.

use std::fmt;

use crate::api::{AllowedApis, Api, ApiSet};
use crate::grant::{Grant, kind_serves};
use crate::ip::{IpRange, IpRanges, MAX_IP_RANGES};
use crate::names::{ConnectionName, NameError, TokenName};
use crate::referer::RefererPattern;
use crate::source::{Source, SourceError, SourceKind};
use crate::sql::QueryRefusal;
use crate::timestamp::Timestamp;
use crate::token::{Connection, MAX_GRANTS, MAX_REFERERS, Policy, PolicyError, fold_duplicates};

/// A stable code for a violation or a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueCode {
    // Violations.
    /// A required list is empty (V1).
    Required,
    /// Not one of the four API names (V1).
    UnknownApi,
    /// `imports` combined with another API (V2).
    ImportsExclusive,
    /// An allowed API that no grant serves (V3).
    ApiWithoutGrant,
    /// A grant that serves none of the allowed APIs (V4).
    GrantUnused,
    /// No such connection in the caller's org (V5).
    ConnectionUnknown,
    /// V6.
    SourceEmpty,
    /// V6.
    SourceTooLong,
    /// V6.
    PatternTooBroad,
    /// V6.
    PatternInvalid,
    /// V6: a query source of several statements.
    MultipleStatements,
    /// V6: a control character in a source.
    SourceInvalidCharacter,
    /// V6: a name whose quoted parts warehouses read differently.
    NameAmbiguous,
    /// V6: a query with a construct that cannot be compared with certainty
    /// (SPEC §2).
    QueryAmbiguous,
    /// V6: a query past the size or nesting cap.
    QueryTooComplex,
    /// V7.
    NameEmpty,
    /// V7.
    NameTooLong,
    /// V7.
    NameInvalid,
    /// V8.
    TooManyReferers,
    /// V8.
    RefererInvalid,
    /// V9: not an RFC 3339 timestamp.
    TimestampInvalid,
    /// V9: not in the future.
    ExpirationPast,
    /// V10.
    TooManyGrants,
    /// A field the request should not have (V10).
    UnknownField,
    /// V11: not an IP address or CIDR range.
    IpRangeInvalid,
    /// V11: more than 50 IP ranges.
    TooManyIpRanges,
    /// The org's token policy forbids this (SPEC §13). A violation on a
    /// change; a warning on a token made before the policy.
    PolicyViolation,
    // Warnings: allowed, but worth a second look.
    /// A query the connection's dialect could not parse.
    QueryNotParsed,
    /// A referer pattern with a path.
    RefererHasPath,
    /// A grant of every source of a connection.
    AllSources,
}

impl IssueCode {
    /// Every code, in declaration order.
    pub const ALL: [IssueCode; 30] = [
        IssueCode::Required,
        IssueCode::UnknownApi,
        IssueCode::ImportsExclusive,
        IssueCode::ApiWithoutGrant,
        IssueCode::GrantUnused,
        IssueCode::ConnectionUnknown,
        IssueCode::SourceEmpty,
        IssueCode::SourceTooLong,
        IssueCode::PatternTooBroad,
        IssueCode::PatternInvalid,
        IssueCode::MultipleStatements,
        IssueCode::SourceInvalidCharacter,
        IssueCode::NameAmbiguous,
        IssueCode::QueryAmbiguous,
        IssueCode::QueryTooComplex,
        IssueCode::NameEmpty,
        IssueCode::NameTooLong,
        IssueCode::NameInvalid,
        IssueCode::TooManyReferers,
        IssueCode::RefererInvalid,
        IssueCode::TimestampInvalid,
        IssueCode::ExpirationPast,
        IssueCode::TooManyGrants,
        IssueCode::UnknownField,
        IssueCode::IpRangeInvalid,
        IssueCode::TooManyIpRanges,
        IssueCode::PolicyViolation,
        IssueCode::QueryNotParsed,
        IssueCode::RefererHasPath,
        IssueCode::AllSources,
    ];

    /// The code's place in [`IssueCode::ALL`]: an exhaustive match, so a new
    /// code fails to compile until it has a place, and a test checks `ALL`
    /// against the places.
    #[cfg(test)]
    const fn position(self) -> usize {
        match self {
            IssueCode::Required => 0,
            IssueCode::UnknownApi => 1,
            IssueCode::ImportsExclusive => 2,
            IssueCode::ApiWithoutGrant => 3,
            IssueCode::GrantUnused => 4,
            IssueCode::ConnectionUnknown => 5,
            IssueCode::SourceEmpty => 6,
            IssueCode::SourceTooLong => 7,
            IssueCode::PatternTooBroad => 8,
            IssueCode::PatternInvalid => 9,
            IssueCode::MultipleStatements => 10,
            IssueCode::SourceInvalidCharacter => 11,
            IssueCode::NameAmbiguous => 12,
            IssueCode::QueryAmbiguous => 13,
            IssueCode::QueryTooComplex => 14,
            IssueCode::NameEmpty => 15,
            IssueCode::NameTooLong => 16,
            IssueCode::NameInvalid => 17,
            IssueCode::TooManyReferers => 18,
            IssueCode::RefererInvalid => 19,
            IssueCode::TimestampInvalid => 20,
            IssueCode::ExpirationPast => 21,
            IssueCode::TooManyGrants => 22,
            IssueCode::UnknownField => 23,
            IssueCode::IpRangeInvalid => 24,
            IssueCode::TooManyIpRanges => 25,
            IssueCode::PolicyViolation => 26,
            IssueCode::QueryNotParsed => 27,
            IssueCode::RefererHasPath => 28,
            IssueCode::AllSources => 29,
        }
    }

    /// The code on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueCode::Required => "required",
            IssueCode::UnknownApi => "unknown_api",
            IssueCode::ImportsExclusive => "imports_exclusive",
            IssueCode::ApiWithoutGrant => "api_without_grant",
            IssueCode::GrantUnused => "grant_unused",
            IssueCode::ConnectionUnknown => "connection_unknown",
            IssueCode::SourceEmpty => "source_empty",
            IssueCode::SourceTooLong => "source_too_long",
            IssueCode::PatternTooBroad => "pattern_too_broad",
            IssueCode::PatternInvalid => "pattern_invalid",
            IssueCode::MultipleStatements => "multiple_statements",
            IssueCode::SourceInvalidCharacter => "source_invalid_character",
            IssueCode::NameAmbiguous => "name_ambiguous",
            IssueCode::QueryAmbiguous => "query_ambiguous",
            IssueCode::QueryTooComplex => "query_too_complex",
            IssueCode::NameEmpty => "name_empty",
            IssueCode::NameTooLong => "name_too_long",
            IssueCode::NameInvalid => "name_invalid",
            IssueCode::TooManyReferers => "too_many_referers",
            IssueCode::RefererInvalid => "referer_invalid",
            IssueCode::TimestampInvalid => "timestamp_invalid",
            IssueCode::ExpirationPast => "expiration_past",
            IssueCode::TooManyGrants => "too_many_grants",
            IssueCode::QueryNotParsed => "query_not_parsed",
            IssueCode::RefererHasPath => "referer_has_path",
            IssueCode::AllSources => "all_sources",
            IssueCode::UnknownField => "unknown_field",
            IssueCode::IpRangeInvalid => "ip_range_invalid",
            IssueCode::TooManyIpRanges => "too_many_ip_ranges",
            IssueCode::PolicyViolation => "policy_violation",
        }
    }
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A violation or warning about one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIssue {
    /// The field's path in the request body, e.g. `grants[2].source`.
    pub field: String,
    /// A stable code.
    pub code: IssueCode,
    /// A sentence for people.
    pub message: String,
}

impl FieldIssue {
    pub(crate) fn new(field: impl Into<String>, code: IssueCode, message: impl Into<String>) -> Self {
        Self { field: field.into(), code, message: message.into() }
    }
}

/// A grant as submitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantDraft {
    /// The connection's name.
    pub connection_name: String,
    /// The source, unclassified.
    pub source: String,
}

/// A token's editable fields as submitted, before any check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenDraft {
    /// `None` on create means "generate one"; on update the caller passes the
    /// current name when the request does not change it.
    pub name: Option<String>,
    /// API names.
    pub allowed_apis: Vec<String>,
    /// Grants.
    pub grants: Vec<GrantDraft>,
    /// Referer patterns.
    pub referers: Vec<String>,
    /// Client addresses and CIDR ranges.
    pub allowed_ips: Vec<String>,
    /// Fields of the request that are not fields of a token. They are
    /// violations (V10), reported with the others: a misspelt `referrers`
    /// must not leave a token unrestricted.
    pub unknown_fields: Vec<String>,
}

/// Where the expiration comes from.
#[derive(Clone, Copy, Debug)]
pub enum ExpirationInput<'a> {
    /// On create: the submitted `expiration_date`, which must lie after `now`.
    Requested {
        /// The submitted text, if any.
        date: Option<&'a str>,
        /// The current time.
        now: Timestamp,
    },
    /// On update: the token's expiration, which cannot change (V9).
    Kept(Option<Timestamp>),
}

/// A draft that passed every rule.
#[derive(Clone, Debug)]
pub struct ValidToken {
    /// The name, when one was given.
    pub name: Option<TokenName>,
    /// The policy.
    pub policy: Policy,
}

fn name_issue(error: &NameError) -> FieldIssue {
    let code = match error {
        NameError::Empty => IssueCode::NameEmpty,
        NameError::TooLong { .. } => IssueCode::NameTooLong,
        NameError::InvalidCharacter { .. } => IssueCode::NameInvalid,
    };
    FieldIssue::new("name", code, format!("the name {error}"))
}

/// The issue a source error is reported as.
pub(crate) const fn source_issue_code(error: &SourceError) -> IssueCode {
    match error {
        SourceError::Empty => IssueCode::SourceEmpty,
        SourceError::TooLong { .. } => IssueCode::SourceTooLong,
        SourceError::PatternTooBroad => IssueCode::PatternTooBroad,
        SourceError::InvalidPattern(_) => IssueCode::PatternInvalid,
        SourceError::MultipleStatements => IssueCode::MultipleStatements,
        SourceError::InvalidCharacter | SourceError::Query(QueryRefusal::ControlCharacter) => {
            IssueCode::SourceInvalidCharacter
        }
        SourceError::AmbiguousName => IssueCode::NameAmbiguous,
        SourceError::Query(QueryRefusal::Empty) => IssueCode::SourceEmpty,
        SourceError::Query(QueryRefusal::TooManyTokens | QueryRefusal::TooDeep) => IssueCode::QueryTooComplex,
        SourceError::Query(_) => IssueCode::QueryAmbiguous,
    }
}

fn source_issue(field: String, error: &SourceError) -> FieldIssue {
    FieldIssue::new(field, source_issue_code(error), error.to_string())
}

/// What to add so that `api` is served, in words.
fn grant_hint(api: Api) -> &'static str {
    match api {
        Api::Sql => "add a query grant or an all-sources (*) grant",
        Api::Maps => "add a table, pattern, query or all-sources (*) grant",
        Api::Imports => "add a table, pattern or all-sources (*) grant for the destination",
        Api::Lds => "",
    }
}

fn served_apis(kind: SourceKind) -> String {
    let names: Vec<&str> = Api::ALL.into_iter().filter(|api| kind_serves(kind, *api)).map(Api::as_str).collect();
    names.join(", ")
}

fn check_apis(raw: &[String], issues: &mut Vec<FieldIssue>) -> Option<AllowedApis> {
    if raw.is_empty() {
        issues.push(FieldIssue::new("allowed_apis", IssueCode::Required, "choose at least one API"));
        return None;
    }
    let mut set = ApiSet::empty();
    let mut all_known = true;
    for (index, name) in raw.iter().enumerate() {
        match name.parse::<Api>() {
            Ok(api) => set.insert(api),
            Err(error) => {
                all_known = false;
                issues.push(FieldIssue::new(
                    format!("allowed_apis[{index}]"),
                    IssueCode::UnknownApi,
                    format!("{name:?}: {error}"),
                ));
            }
        }
    }
    if set.contains(Api::Imports) && set.len() > 1 {
        issues.push(FieldIssue::new(
            "allowed_apis",
            IssueCode::ImportsExclusive,
            "imports cannot be combined with other APIs: it writes data and its grants name destinations; \
             use a separate token for imports",
        ));
        return None;
    }
    if all_known { AllowedApis::new(set).ok() } else { None }
}

/// Checks a grant; `None` when it breaks a rule (recorded in `issues`).
fn check_grant(
    index: usize,
    draft: &GrantDraft,
    connections: &[Connection],
    issues: &mut Vec<FieldIssue>,
) -> Option<Grant> {
    let provider = ConnectionName::new(&draft.connection_name)
        .ok()
        .and_then(|name| connections.iter().find(|c| c.name == name).map(|c| (name, c.provider)));
    let source_field = format!("grants[{index}].source");
    match provider {
        Some((name, provider)) => match Grant::new(name, provider, &draft.source) {
            Ok(grant) => Some(grant),
            Err(error) => {
                issues.push(source_issue(source_field, &error));
                None
            }
        },
        None => {
            issues.push(FieldIssue::new(
                format!("grants[{index}].connection_name"),
                IssueCode::ConnectionUnknown,
                format!("there is no connection named {:?} in your organization", draft.connection_name),
            ));
            // Without a provider the source cannot be bound, but the checks
            // that hold for every provider can still be reported now.
            if let Err(error) = Source::classify(&draft.source) {
                issues.push(source_issue(source_field, &error));
            }
            None
        }
    }
}

fn check_expiration(input: ExpirationInput<'_>, issues: &mut Vec<FieldIssue>) -> Option<Timestamp> {
    match input {
        ExpirationInput::Kept(expiration) => expiration,
        ExpirationInput::Requested { date: None, .. } => None,
        ExpirationInput::Requested { date: Some(text), now } => match Timestamp::parse_rfc3339(text) {
            Ok(expiration) if expiration > now => Some(expiration),
            Ok(_) => {
                issues.push(FieldIssue::new(
                    "expiration_date",
                    IssueCode::ExpirationPast,
                    "the expiration date must be in the future",
                ));
                None
            }
            Err(error) => {
                let message = format!("the expiration date is {error}");
                issues.push(FieldIssue::new("expiration_date", IssueCode::TimestampInvalid, message));
                None
            }
        },
    }
}

/// Validates a draft against SPEC §4 (V1–V10 but name uniqueness, which
/// only the store can check atomically).
///
/// `connections` are those of the caller's org. Duplicate APIs, grants and
/// referers fold; field indices in violations refer to the draft as given.
///
/// # Errors
/// Every violation found, in field order.
pub fn validate(
    draft: &TokenDraft,
    expiration: ExpirationInput<'_>,
    connections: &[Connection],
) -> Result<ValidToken, Vec<FieldIssue>> {
    let parts = Parts {
        name: draft.name.as_deref(),
        apis: Part::Given(&draft.allowed_apis),
        grants: Part::Given(&draft.grants),
        referers: Part::Given(&draft.referers),
        allowed_ips: Part::Given(&draft.allowed_ips),
        unknown_fields: &draft.unknown_fields,
    };
    validate_parts(&parts, expiration, connections)
}

/// The fields an update replaces (SPEC §7: each replaces the whole field).
/// A field left out keeps the token's own value, as it is: typed, already
/// valid, never turned back into text to be read again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateDraft {
    /// `Some(None)` resets the name to the generated `tk_…` one.
    pub name: Option<Option<String>>,
    /// New allowed APIs.
    pub allowed_apis: Option<Vec<String>>,
    /// New grants.
    pub grants: Option<Vec<GrantDraft>>,
    /// New referers.
    pub referers: Option<Vec<String>>,
    /// New client address restrictions.
    pub allowed_ips: Option<Vec<String>>,
    /// Fields of the request that are not fields of a token (V10).
    pub unknown_fields: Vec<String>,
}

/// Validates an update of a token named `name` with `policy`: the fields
/// the update names are checked as on create, the others are kept, and the
/// rules that relate fields (V3, V4) are checked on the result. The
/// expiration is the token's own (V9).
///
/// # Errors
/// Every violation found, in field order.
pub fn validate_update(
    name: &TokenName,
    policy: &Policy,
    update: &UpdateDraft,
    connections: &[Connection],
) -> Result<ValidToken, Vec<FieldIssue>> {
    let parts = Parts {
        name: match &update.name {
            None => Some(name.as_str()),
            Some(name) => name.as_deref(),
        },
        apis: update.allowed_apis.as_deref().map_or(Part::Kept(policy.apis()), Part::Given),
        grants: update.grants.as_deref().map_or(Part::Kept(policy.grants()), Part::Given),
        referers: update.referers.as_deref().map_or(Part::Kept(policy.referers()), Part::Given),
        allowed_ips: update.allowed_ips.as_deref().map_or(Part::Kept(policy.allowed_ips()), Part::Given),
        unknown_fields: &update.unknown_fields,
    };
    validate_parts(&parts, ExpirationInput::Kept(policy.expiration()), connections)
}

/// A field of a draft: as the client sent it, or kept from the token.
#[derive(Clone, Copy)]
enum Part<'a, Raw: ?Sized, Typed> {
    Given(&'a Raw),
    Kept(Typed),
}

/// What [`validate_parts`] checks.
struct Parts<'a> {
    name: Option<&'a str>,
    apis: Part<'a, [String], AllowedApis>,
    grants: Part<'a, [GrantDraft], &'a [Grant]>,
    referers: Part<'a, [String], &'a [RefererPattern]>,
    allowed_ips: Part<'a, [String], &'a IpRanges>,
    unknown_fields: &'a [String],
}

fn validate_parts(
    draft: &Parts<'_>,
    expiration: ExpirationInput<'_>,
    connections: &[Connection],
) -> Result<ValidToken, Vec<FieldIssue>> {
    let mut issues = Vec::new();

    let name = match draft.name.map(TokenName::new) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(error)) => {
            issues.push(name_issue(&error));
            None
        }
    };

    let apis = match draft.apis {
        Part::Given(raw) => check_apis(raw, &mut issues),
        Part::Kept(apis) => Some(apis),
    };

    let (grants, grant_index): (Vec<Option<Grant>>, Vec<usize>) = match draft.grants {
        Part::Given(raw) => {
            // Identical grants fold before counting, so that a client
            // resending a list with repeats is not refused for their number.
            let (unique_grants, grant_index) =
                fold_duplicates(raw.iter().map(|g| (g.connection_name.as_str(), g.source.trim())).collect());
            if unique_grants.len() > MAX_GRANTS {
                issues.push(FieldIssue::new(
                    "grants",
                    IssueCode::TooManyGrants,
                    format!("{} grants; at most {MAX_GRANTS} are allowed", unique_grants.len()),
                ));
            }
            let grants = grant_index.iter().map(|&i| check_grant(i, &raw[i], connections, &mut issues)).collect();
            (grants, grant_index)
        }
        Part::Kept(grants) => (grants.iter().cloned().map(Some).collect(), (0..grants.len()).collect()),
    };

    let referers = match draft.referers {
        Part::Given(raw) => check_referers(raw, &mut issues),
        Part::Kept(referers) => referers.to_vec(),
    };

    let allowed_ips = match draft.allowed_ips {
        Part::Given(raw) => check_allowed_ips(raw, &mut issues),
        Part::Kept(ranges) => ranges.clone(),
    };

    let expiration = check_expiration(expiration, &mut issues);

    for field in draft.unknown_fields {
        issues.push(FieldIssue::new(
            field.clone(),
            IssueCode::UnknownField,
            "unknown field; a token has name, allowed_apis, grants, referers, allowed_ips and expiration_date",
        ));
    }

    // V3 and V4 relate APIs to grants; they are only meaningful when both
    // sides are known, or a typo in one place would be reported as a
    // missing grant in another.
    let grants: Option<Vec<Grant>> = grants.into_iter().collect();
    let mut policy = None;
    if let (Some(apis), Some(grants)) = (apis, grants) {
        match Policy::new(apis, grants, referers, expiration) {
            Ok(valid) => policy = Some(valid.with_allowed_ips(allowed_ips)),
            Err(errors) => {
                for error in errors {
                    match error {
                        PolicyError::ApiWithoutGrant(api) => issues.push(FieldIssue::new(
                            "allowed_apis",
                            IssueCode::ApiWithoutGrant,
                            format!("no grant serves the {api} API: {}", grant_hint(api)),
                        )),
                        PolicyError::GrantUnused(unique) => {
                            let index = grant_index.get(unique).copied().unwrap_or(unique);
                            let kind = match draft.grants {
                                Part::Given(raw) => raw.get(index).and_then(|g| Source::classify(&g.source).ok()),
                                Part::Kept(grants) => grants.get(index).map(|g| g.source().kind()),
                            };
                            let detail = kind.map_or(String::new(), |kind| {
                                format!(" (a {} grant serves {})", kind.as_str(), served_apis(kind))
                            });
                            issues.push(FieldIssue::new(
                                format!("grants[{index}]"),
                                IssueCode::GrantUnused,
                                format!("this grant serves none of the allowed APIs{detail}"),
                            ));
                        }
                        // Counted above, with the numbers the client sent.
                        PolicyError::TooManyGrants(_) | PolicyError::TooManyReferers(_) => {}
                    }
                }
            }
        }
    }

    match policy {
        Some(policy) if issues.is_empty() => Ok(ValidToken { name, policy }),
        _ => {
            sort_by_field(&mut issues);
            Err(issues)
        }
    }
}

/// Checks referer patterns (V8), folding duplicates.
fn check_referers(raw: &[String], issues: &mut Vec<FieldIssue>) -> Vec<RefererPattern> {
    let (unique_referers, referer_index) = fold_duplicates(raw.iter().map(|r| r.trim()).collect());
    if unique_referers.len() > MAX_REFERERS {
        issues.push(FieldIssue::new(
            "referers",
            IssueCode::TooManyReferers,
            format!("{} referers; at most {MAX_REFERERS} are allowed", unique_referers.len()),
        ));
    }
    let mut referers = Vec::with_capacity(unique_referers.len());
    for (raw, index) in unique_referers.iter().zip(&referer_index) {
        match RefererPattern::parse(raw) {
            Ok(pattern) => referers.push(pattern),
            Err(error) => issues.push(FieldIssue::new(
                format!("referers[{index}]"),
                IssueCode::RefererInvalid,
                format!("{raw:?}: {error}"),
            )),
        }
    }
    referers
}

/// Checks client address restrictions (V11), folding duplicates: two
/// spellings of one range (`::ffff:10.0.0.0/104` and `10.0.0.0/8`) are one.
fn check_allowed_ips(raw: &[String], issues: &mut Vec<FieldIssue>) -> IpRanges {
    let mut ranges = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        match IpRange::parse(text) {
            Ok(range) => ranges.push(range),
            Err(error) => issues.push(FieldIssue::new(
                format!("allowed_ips[{index}]"),
                IssueCode::IpRangeInvalid,
                format!("{text:?}: {error}"),
            )),
        }
    }
    let (ranges, _) = IpRanges::new(ranges);
    if ranges.len() > MAX_IP_RANGES {
        issues.push(FieldIssue::new(
            "allowed_ips",
            IssueCode::TooManyIpRanges,
            format!("{} addresses or ranges; at most {MAX_IP_RANGES} are allowed", ranges.len()),
        ));
    }
    ranges
}

/// Orders issues as the fields appear in a token: name, allowed APIs,
/// grants, referers, client addresses, expiration. Within a field, the
/// order found is kept.
fn sort_by_field(issues: &mut [FieldIssue]) {
    let rank = |field: &str| match field.split(['[', '.']).next() {
        Some("name") => 0,
        Some("allowed_apis") => 1,
        Some("grants") => 2,
        Some("referers") => 3,
        Some("allowed_ips") => 4,
        Some("expiration_date") => 5,
        _ => 6,
    };
    issues.sort_by_key(|issue| rank(&issue.field));
}

/// The warnings of a valid token: allowed, but worth a second look. Field
/// indices refer to the token's (folded) grants and referers.
#[must_use]
pub fn warnings(policy: &Policy) -> Vec<FieldIssue> {
    let mut out = Vec::new();
    for (index, grant) in policy.grants().iter().enumerate() {
        let field = format!("grants[{index}].source");
        match grant.source().kind() {
            SourceKind::All => out.push(FieldIssue::new(
                field,
                IssueCode::AllSources,
                format!(
                    "this grant gives access to every source of connection {}, including tables created later",
                    grant.connection()
                ),
            )),
            SourceKind::Query if grant.source().query_parsed() == Some(false) => out.push(FieldIssue::new(
                field,
                IssueCode::QueryNotParsed,
                format!(
                    "the {} SQL parser could not read this query as one statement: check it for typos. Requests \
                     are still compared with it token by token",
                    grant.provider()
                ),
            )),
            _ => {}
        }
    }
    for (index, pattern) in policy.referers().iter().enumerate() {
        if pattern.restricts_path() {
            out.push(FieldIssue::new(
                format!("referers[{index}]"),
                IssueCode::RefererHasPath,
                "browsers usually send only the origin on cross-origin requests, so a referer with a path \
                 may refuse requests from that site",
            ));
        }
    }
    out
}

#[cfg(test)]
mod code_list {
    use super::IssueCode;

    #[test]
    fn all_lists_every_code_once_in_order() {
        for (index, code) in IssueCode::ALL.iter().enumerate() {
            assert_eq!(code.position(), index, "{code:?}");
        }
        let names: std::collections::BTreeSet<&str> = IssueCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), IssueCode::ALL.len(), "wire names are unique");
    }
}
