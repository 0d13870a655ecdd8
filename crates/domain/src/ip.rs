//! Client IP restrictions (SPEC: a token's `allowed_ips`) and the client
//! address of a request that came through proxies (`--trusted-proxies`).
//!
//! # One address space
//!
//! Matching happens in the IPv6 address space. An IPv4 address `a.b.c.d` is
//! the IPv4-mapped IPv6 address `::ffff:a.b.c.d`, and an IPv4 range
//! `a.b.c.d/n` is `::ffff:a.b.c.d/(96+n)`. A dual-stack socket reports an
//! IPv4 client as `::ffff:10.1.2.3`; with one space that client matches
//! `10.0.0.0/8` as it should, an IPv4 client matches `::ffff:10.0.0.0/104`,
//! and `::/0` matches every client, IPv4 ones included (while `0.0.0.0/0`
//! matches every IPv4 client and no IPv6 one). A range inside
//! `::ffff:0:0/96` is stored and shown as the IPv4 range it is, so
//! `::ffff:10.0.0.0/104` equals, and prints as, `10.0.0.0/8`.
//!
//! Only the mapped form is IPv4. The other embeddings, IPv4-compatible
//! `::a.b.c.d` (deprecated by RFC 4291), NAT64's `64:ff9b::/96` and 6to4's
//! `2002::/16`, are plain IPv6 addresses here: a packet from them arrived
//! over IPv6 from a translator or relay, which is the address a socket
//! reports, and whether the translator's IPv4 side should count as the
//! client is a deployment's choice that a range can state explicitly.
//!
//! # Strict reading
//!
//! A range is accepted only in the forms every reader agrees on: dotted-quad
//! IPv4 or RFC 4291 IPv6 text, optionally `/N` in decimal. IPv4 shorthand is
//! refused because readers disagree on it: `10.1` is 10.0.0.1 to
//! `inet_aton` (and so to `ping` and browsers) but `10.1.0.0` to
//! PostgreSQL's `cidr`, and `010.0.0.1` is 8.0.0.1 to `inet_aton`. A range
//! with bits set after its prefix (`10.0.0.1/8`) is refused, as PostgreSQL's
//! `cidr` refuses it, because its author meant either the host or the
//! network and we cannot tell which; the error names the network. Zone ids,
//! brackets and ports are refused: they describe a socket, not a client.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most ranges a token may list in `allowed_ips` (V11). Validation
/// enforces it, so that the error names the field; [`IpRanges`] does not.
pub const MAX_IP_RANGES: usize = 50;

/// The IPv4-mapped prefix `::ffff:0:0/96`, as the top 96 bits of an address.
const MAPPED: u128 = 0xffff << 32;

/// The prefix length of `::ffff:0:0/96`, which an IPv4 prefix is added to.
const MAPPED_PREFIX: u8 = 96;

/// `address` in the one IPv6 address space of the module documentation.
fn to_space(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => MAPPED | u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The network bits of a prefix of `prefix` bits (at most 128).
fn mask(prefix: u8) -> u128 {
    // A shift by 128 is out of range, and a /0 keeps no bits.
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The address as it should be shown and compared: an IPv4-mapped IPv6
/// address (`::ffff:192.0.2.1`, as a dual-stack socket reports an IPv4
/// client) becomes the IPv4 address; every other address is unchanged.
#[must_use]
pub fn canonical_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Why a text is not an IP address or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpRangeError {
    #[error("the address is empty")]
    Empty,
    #[error("an address or range must be at most {max} bytes")]
    TooLong { max: usize },
    #[error("an address must not contain whitespace or control characters")]
    Whitespace,
    #[error("an address must not name a zone (`%eth0`): a zone is local to one machine")]
    ZoneId,
    #[error("write an IPv6 address without brackets: `2001:db8::1`, not `[2001:db8::1]`")]
    Brackets,
    #[error("an address must not carry a port")]
    Port,
    #[error(
        "write an IPv4 address as four decimal numbers without leading zeros, as in 10.0.0.0/8: \
         shorthand such as `10/8`, `10.1`, `0x0a.0.0.1` or `010.0.0.1` means different addresses to different programs"
    )]
    Ipv4Shorthand,
    #[error("not an IPv4 or IPv6 address (host names are not accepted)")]
    Address,
    #[error("write the prefix length as a decimal number without sign or leading zeros, as in /24, not as a netmask")]
    PrefixSyntax,
    #[error("the prefix length must be from 0 to {max}")]
    PrefixOutOfRange { max: u8 },
    #[error("the address has bits set after the prefix length; the network is {network}")]
    HostBitsSet { network: IpRange },
}

/// One IP address or CIDR range: `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`.
///
/// Invariant: `network` is in the one address space of the module
/// documentation, `prefix` (0 to 128) is its prefix length there, and the
/// bits of `network` after the prefix are zero. The representation is
/// therefore canonical: two ranges are equal exactly when they cover the
/// same addresses, and [`IpRange::contains`] is a mask and a compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: u128,
    prefix: u8,
}

impl IpRange {
    /// The longest text [`IpRange::parse`] reads, in bytes. The longest
    /// canonical text, such as `ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127`,
    /// is 43 bytes; the limit leaves room for other spellings (leading
    /// zeros, a dotted IPv4 tail) while keeping junk from being parsed at all.
    pub const MAX_LEN: usize = 64;

    /// Reads an address (`192.0.2.7`, `2001:db8::1`) or a range
    /// (`10.0.0.0/8`, `2001:db8::/32`); see the module documentation for
    /// what is refused and why. A bare address is a /32 or /128.
    ///
    /// # Errors
    /// The [`IpRangeError`] that says what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Self, IpRangeError> {
        if text.is_empty() {
            return Err(IpRangeError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(IpRangeError::TooLong { max: Self::MAX_LEN });
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IpRangeError::Whitespace);
        }
        if text.contains('%') {
            return Err(IpRangeError::ZoneId);
        }
        if text.contains(['[', ']']) {
            return Err(IpRangeError::Brackets);
        }
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = parse_address(address)?;
        let max = max_prefix(address);
        let prefix = prefix.map_or(Ok(max), |prefix| parse_prefix(prefix, max))?;
        Self::new(address, prefix)
    }

    /// The range of `prefix_len` bits starting at `network`, as
    /// `network/prefix_len` would be read.
    ///
    /// # Errors
    /// [`IpRangeError::PrefixOutOfRange`] when the prefix is longer than the
    /// address, [`IpRangeError::HostBitsSet`] when `network` has bits set
    /// after it.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Self, IpRangeError> {
        let max = max_prefix(network);
        if prefix_len > max {
            return Err(IpRangeError::PrefixOutOfRange { max });
        }
        let prefix = if network.is_ipv4() { MAPPED_PREFIX + prefix_len } else { prefix_len };
        let address = to_space(network);
        let range = Self { network: address & mask(prefix), prefix };
        if range.network == address { Ok(range) } else { Err(IpRangeError::HostBitsSet { network: range }) }
    }

    /// Whether `address` is in the range. IPv4 and IPv4-mapped IPv6
    /// addresses are the same address here (see the module documentation).
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        self.contains_bits(to_space(address))
    }

    fn contains_bits(&self, address: u128) -> bool {
        address & mask(self.prefix) == self.network
    }

    /// Whether the range is IPv4 (an IPv4 range, or an IPv6 range inside
    /// `::ffff:0:0/96`, which is the same thing).
    #[must_use]
    pub fn is_ipv4(&self) -> bool {
        self.prefix >= MAPPED_PREFIX && self.network >> 32 == MAPPED >> 32
    }

    /// The first address of the range, in canonical form (IPv4 for an IPv4
    /// range).
    #[must_use]
    pub fn network(&self) -> IpAddr {
        canonical_address(IpAddr::V6(Ipv6Addr::from_bits(self.network)))
    }

    /// The prefix length in the range's own family: 8 for `10.0.0.0/8`.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        if self.is_ipv4() { self.prefix - MAPPED_PREFIX } else { self.prefix }
    }

    /// Whether the range is a single address (a /32 or /128).
    #[must_use]
    pub fn is_single_address(&self) -> bool {
        self.prefix == 128
    }
}

/// The prefix length of a whole address of `address`'s family.
fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// Reads the address part of a range, telling apart the ways it can be
/// wrong that deserve their own message.
fn parse_address(text: &str) -> Result<IpAddr, IpRangeError> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(address);
    }
    // `192.0.2.7:80`. (An IPv6 address with a port needs brackets, which
    // are refused before this; without them the port reads as a group.)
    if let Some((host, port)) = text.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (host.parse::<Ipv4Addr>().is_ok() || read_by_inet_aton(host))
    {
        return Err(IpRangeError::Port);
    }
    if read_by_inet_aton(text) {
        return Err(IpRangeError::Ipv4Shorthand);
    }
    Err(IpRangeError::Address)
}

/// Whether C's `inet_aton` reads `text` as an IPv4 address: one to four
/// parts separated by dots, each decimal, octal (a leading 0) or
/// hexadecimal (`0x`), the last one filling the remaining bytes. Called only
/// on text that std's stricter dotted-quad reader has refused, so a `true`
/// is the shorthand the module documentation refuses.
fn read_by_inet_aton(text: &str) -> bool {
    let count = text.split('.').count();
    if count > 4 {
        return false;
    }
    text.split('.').enumerate().all(|(index, part)| {
        let limit: u64 = if index + 1 == count { (1 << (8 * (5 - count))) - 1 } else { 255 };
        c_number(part).is_some_and(|value| value <= limit)
    })
}

/// A number as C's `strtoul` with base 0 reads it, without sign or spaces.
fn c_number(text: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        (hex, 16)
    } else if text.len() > 1 && text.starts_with('0') {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    // `from_str_radix` accepts a leading `+`, which `inet_aton` does not.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Reads the prefix length after the `/`.
fn parse_prefix(text: &str, max: u8) -> Result<u8, IpRangeError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || (text.len() > 1 && text.starts_with('0')) {
        return Err(IpRangeError::PrefixSyntax);
    }
    // Digits only, no leading zero: more than three digits is over 999.
    match text.parse::<u8>() {
        Ok(prefix) if prefix <= max => Ok(prefix),
        Ok(_) | Err(_) => Err(IpRangeError::PrefixOutOfRange { max }),
    }
}

impl fmt::Display for IpRange {
    /// The canonical form: `10.0.0.0/8`, `2001:db8::/32`, and a single
    /// address without a prefix (`192.0.2.7`, `2001:db8::1`). IPv6 is
    /// written as RFC 5952 recommends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let network = self.network();
        if self.is_single_address() { write!(f, "{network}") } else { write!(f, "{network}/{}", self.prefix_len()) }
    }
}

impl fmt::Debug for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpRange({self})")
    }
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl From<IpAddr> for IpRange {
    /// The range of this one address.
    fn from(address: IpAddr) -> Self {
        Self { network: to_space(address), prefix: 128 }
    }
}

/// The ranges a token may be used from (`allowed_ips`).
///
/// Invariant: no two ranges are equal; they keep the order they were given
/// in. Overlapping ranges (`10.0.0.0/8` and `10.1.2.3`) are kept as
/// written. Empty means any address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpRanges(Vec<IpRange>);

impl IpRanges {
    /// The ranges without later copies of equal ones (`10.0.0.0/8` and
    /// `::ffff:10.0.0.0/104` are equal), and the indices in `ranges` of the
    /// copies dropped, so that a caller can point at them.
    #[must_use]
    pub fn new(ranges: Vec<IpRange>) -> (Self, Vec<usize>) {
        let mut seen = HashSet::with_capacity(ranges.len());
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(ranges.len());
        for (index, range) in ranges.into_iter().enumerate() {
            if seen.insert(range) {
                kept.push(range);
            } else {
                dropped.push(index);
            }
        }
        (Self(kept), dropped)
    }

    /// Whether there are no ranges, so that any address is allowed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many ranges there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The ranges, in the order given.
    pub fn iter(&self) -> std::slice::Iter<'_, IpRange> {
        self.0.iter()
    }

    /// The ranges, in the order given.
    #[must_use]
    pub fn as_slice(&self) -> &[IpRange] {
        &self.0
    }

    /// Whether a request from `client` may use the token.
    ///
    /// With no ranges, any request may, even one whose client address is
    /// unknown. Otherwise the address must be known and inside some range:
    /// a restricted token fails closed when the proxies in front of latchkey
    /// do not say who the client is.
    #[must_use]
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        client.is_some_and(|address| self.contains(address))
    }

    /// Whether some range contains `address`.
    fn contains(&self, address: IpAddr) -> bool {
        let bits = to_space(address);
        self.0.iter().any(|range| range.contains_bits(bits))
    }
}

impl<'a> IntoIterator for &'a IpRanges {
    type Item = &'a IpRange;
    type IntoIter = std::slice::Iter<'a, IpRange>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A request's client address, as far as it can be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddress {
    /// The client's address, in canonical form ([`canonical_address`]).
    Known(IpAddr),
    /// A trusted proxy sent an `X-Forwarded-For` that could not be read
    /// where it mattered: a token restricted to addresses refuses the
    /// request, one that is not ignores it.
    Unknown,
}

impl ClientAddress {
    /// The address, when known.
    #[must_use]
    pub fn known(self) -> Option<IpAddr> {
        match self {
            ClientAddress::Known(address) => Some(address),
            ClientAddress::Unknown => None,
        }
    }
}

/// Why a `--trusted-proxies` list cannot be read: the item, counted from 1,
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted proxy {position} ({item:?}): {reason}")]
pub struct TrustedProxiesError {
    /// Which item of the list, counted from 1.
    pub position: usize,
    /// The item as written, spaces trimmed.
    pub item: String,
    /// What is wrong with it.
    pub reason: IpRangeError,
}

/// The proxies whose `X-Forwarded-For` latchkey believes.
///
/// Each proxy appends the address it received the request from to
/// `X-Forwarded-For`, so the list reads from the client on the left to the
/// last proxy on the right, and anything a client sent itself ends up at the
/// left. [`TrustedProxies::client_address`] reads it from the right and
/// stops at the first address that is not a trusted proxy: that one was
/// written by a proxy latchkey trusts, and everything further left could
/// have been made up by the client.
///
/// The RFC 7239 `Forwarded` header is not read: proxies that set it also
/// set `X-Forwarded-For`, and reading two headers that may disagree would
/// give a client two chances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(IpRanges);

impl TrustedProxies {
    /// No trusted proxies: the client is always the peer.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// These ranges, duplicates folded.
    #[must_use]
    pub fn new(ranges: Vec<IpRange>) -> Self {
        Self(IpRanges::new(ranges).0)
    }

    /// Reads a comma-separated list such as `127.0.0.1, 10.0.0.0/8`.
    /// Spaces around items are ignored, and a blank list trusts no proxy.
    ///
    /// # Errors
    /// [`TrustedProxiesError`] naming the first item that is not an
    /// [`IpRange`]; an empty item (`a,,b`, or a trailing comma) is one.
    pub fn parse(list: &str) -> Result<Self, TrustedProxiesError> {
        if list.trim().is_empty() {
            return Ok(Self::none());
        }
        let ranges = list
            .split(',')
            .map(str::trim)
            .enumerate()
            .map(|(index, item)| {
                IpRange::parse(item).map_err(|reason| TrustedProxiesError {
                    position: index + 1,
                    item: item.to_owned(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(ranges))
    }

    /// The trusted ranges.
    #[must_use]
    pub fn ranges(&self) -> &IpRanges {
        &self.0
    }

    /// Whether `address` is a trusted proxy.
    #[must_use]
    pub fn is_trusted(&self, address: IpAddr) -> bool {
        self.0.contains(address)
    }

    /// The client of a request that arrived from `peer` with these
    /// `X-Forwarded-For` header lines (each a comma-separated list, in the
    /// order received).
    ///
    /// - A peer that is not a trusted proxy is the client, and
    ///   `X-Forwarded-For` is ignored: anyone can send it.
    /// - Behind a trusted peer, the lines are read as one list from the
    ///   right, skipping trusted proxies; the first other address is the
    ///   client. When every address is a trusted proxy, the leftmost is the
    ///   client; with no `X-Forwarded-For` at all, the peer.
    /// - An item the walk reaches that is not a bare IP address (after
    ///   trimming spaces and tabs) makes the client
    ///   [`ClientAddress::Unknown`]. That includes an empty item, a port or
    ///   brackets, which mean a proxy format this reading does not know.
    ///   Items left of the client are never read: the client wrote them.
    ///
    /// A caller holding a header line that is not text (bytes outside
    /// ASCII) should pass it as `""`: the walk then treats it as unreadable,
    /// and only if it reaches it.
    #[must_use]
    pub fn client_address(&self, peer: IpAddr, forwarded_for: &[&str]) -> ClientAddress {
        let peer = canonical_address(peer);
        if !self.is_trusted(peer) {
            return ClientAddress::Known(peer);
        }
        let mut leftmost = peer;
        for item in forwarded_for.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Ok(address) = item.trim_matches([' ', '\t']).parse::<IpAddr>() else {
                return ClientAddress::Unknown;
            };
            let address = canonical_address(address);
            if !self.is_trusted(address) {
                return ClientAddress::Known(address);
            }
            leftmost = address;
        }
        ClientAddress::Known(leftmost)
    }
}

impl fmt::Display for TrustedProxies {
    /// The list as [`TrustedProxies::parse`] reads it, in canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, range) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> IpRange {
        IpRange::parse(text).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Every form that is accepted, and how it is shown.
    #[test]
    fn accepted_forms_and_their_canonical_text() {
        let cases: &[(&str, &str)] = &[
            ("192.0.2.7", "192.0.2.7"),
            ("192.0.2.7/32", "192.0.2.7"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("192.0.2.0/24", "192.0.2.0/24"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8::1/128", "2001:db8::1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("::", "::"),
            ("::/0", "::/0"),
            ("::1", "::1"),
            ("fe80::/10", "fe80::/10"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            // IPv4-mapped: the IPv4 range it is.
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("::FFFF:c000:201", "192.0.2.1"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            ("0:0:0:0:0:ffff:192.0.2.0/120", "192.0.2.0/24"),
            // Other embeddings stay IPv6.
            ("::192.0.2.1", "::c000:201"),
            ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
            ("64:ff9b::/96", "64:ff9b::/96"),
            ("2002:c000:201::/48", "2002:c000:201::/48"),
        ];
        for (text, shown) in cases {
            let parsed = IpRange::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(parsed.to_string(), *shown, "{text:?}");
            assert_eq!(IpRange::parse(shown), Ok(parsed), "{shown:?} reads back");
            assert_eq!(text.parse::<IpRange>(), Ok(parsed), "FromStr of {text:?}");
        }
    }

    /// Every refusal, each with its own reason.
    #[test]
    fn refused_forms() {
        use IpRangeError as E;
        let long = format!("2001:0db8:0000:0000:0000:0000:0000:0001/{}", "1".repeat(30));
        let cases: &[(&str, IpRangeError)] = &[
            ("", E::Empty),
            (long.as_str(), E::TooLong { max: 64 }),
            (" 10.0.0.1", E::Whitespace),
            ("10.0.0.1 ", E::Whitespace),
            ("10.0.0.0 /8", E::Whitespace),
            ("10.0.0.0/ 8", E::Whitespace),
            ("2001:db8::1\n", E::Whitespace),
            ("10.0.0.1\u{0}", E::Whitespace),
            ("10.0.0.1\u{a0}", E::Whitespace),
            ("fe80::1%eth0", E::ZoneId),
            ("fe80::1%1/64", E::ZoneId),
            ("[::1]", E::Brackets),
            ("[2001:db8::1]:443", E::Brackets),
            ("[::1]/128", E::Brackets),
            ("192.0.2.7:80", E::Port),
            ("192.0.2.0:80/24", E::Port),
            ("10:80", E::Port),
            ("10/8", E::Ipv4Shorthand),
            ("10.1", E::Ipv4Shorthand),
            ("10.1/16", E::Ipv4Shorthand),
            ("10.1.2", E::Ipv4Shorthand),
            ("0x0a.0.0.1", E::Ipv4Shorthand),
            ("0X0A000001", E::Ipv4Shorthand),
            ("010.0.0.1", E::Ipv4Shorthand),
            ("10.0.0.01", E::Ipv4Shorthand),
            ("167772161", E::Ipv4Shorthand),
            ("0", E::Ipv4Shorthand),
            ("256.0.0.1", E::Address),
            ("1.2.3.4.5", E::Address),
            ("1.2.3.", E::Address),
            ("+1.2.3.4", E::Address),
            ("08.0.0.1", E::Address),
            ("::ffff:010.0.0.1", E::Address),
            ("::ffff:1.2.3", E::Address),
            ("00001::", E::Address),
            ("1:2:3:4:5:6:7:8:9", E::Address),
            ("2001:db8:::1", E::Address),
            ("localhost", E::Address),
            ("localhost:80", E::Address),
            ("example.com/24", E::Address),
            ("/8", E::Address),
            ("１.2.3.4", E::Address),
            ("10.0.0.0/", E::PrefixSyntax),
            ("10.0.0.0/08", E::PrefixSyntax),
            ("10.0.0.0/+8", E::PrefixSyntax),
            ("10.0.0.0/-8", E::PrefixSyntax),
            ("10.0.0.0/255.0.0.0", E::PrefixSyntax),
            ("10.0.0.0/8/8", E::PrefixSyntax),
            ("10.0.0.0/0x8", E::PrefixSyntax),
            ("10.0.0.0/00", E::PrefixSyntax),
            ("10.0.0.0/33", E::PrefixOutOfRange { max: 32 }),
            ("10.0.0.0/256", E::PrefixOutOfRange { max: 32 }),
            ("10.0.0.0/99999999999999999999", E::PrefixOutOfRange { max: 32 }),
            ("::/129", E::PrefixOutOfRange { max: 128 }),
            ("::ffff:0:0/200", E::PrefixOutOfRange { max: 128 }),
            ("10.0.0.1/8", E::HostBitsSet { network: range("10.0.0.0/8") }),
            ("192.0.2.7/24", E::HostBitsSet { network: range("192.0.2.0/24") }),
            ("0.0.0.1/0", E::HostBitsSet { network: range("0.0.0.0/0") }),
            ("2001:db8::1/32", E::HostBitsSet { network: range("2001:db8::/32") }),
            ("::1/0", E::HostBitsSet { network: range("::/0") }),
            ("::ffff:10.0.0.1/104", E::HostBitsSet { network: range("10.0.0.0/8") }),
            ("::ffff:0:0/95", E::HostBitsSet { network: range("::fffe:0:0/95") }),
        ];
        for (text, expected) in cases {
            assert_eq!(IpRange::parse(text), Err(*expected), "{text:?}");
        }
    }

    /// std's dotted-quad reader is what keeps octal-looking text out; this
    /// pins that it still refuses leading zeros.
    #[test]
    fn std_refuses_leading_zeros_in_ipv4() {
        assert!("010.0.0.1".parse::<Ipv4Addr>().is_err());
        assert!("1.2.3.04".parse::<Ipv4Addr>().is_err());
        assert!("::ffff:1.2.3.04".parse::<Ipv6Addr>().is_err());
        assert!("0.0.0.0".parse::<Ipv4Addr>().is_ok());
    }

    #[test]
    fn messages_say_what_to_write() {
        let message = |text: &str| IpRange::parse(text).unwrap_err().to_string();
        assert_eq!(
            message("10.0.0.1/8"),
            "the address has bits set after the prefix length; the network is 10.0.0.0/8"
        );
        assert_eq!(
            message("2001:db8::1/32"),
            "the address has bits set after the prefix length; the network is 2001:db8::/32"
        );
        assert!(message("10/8").contains("four decimal numbers"), "{}", message("10/8"));
        assert!(message("[::1]").contains("without brackets"));
        assert!(message("::/129").contains("from 0 to 128"));
        assert!(message("10.0.0.0/33").contains("from 0 to 32"));
        assert!(message(&"1".repeat(65)).contains("at most 64 bytes"));
    }

    #[test]
    fn the_length_limit_is_in_bytes_and_checked_first() {
        let padded = format!("2001:0db8:0000:0000:0000:0000:0000:0000/{}", "0".repeat(24));
        assert_eq!(padded.len(), 64);
        assert_eq!(IpRange::parse(&padded), Err(IpRangeError::PrefixSyntax), "short enough to be read");
        assert_eq!(IpRange::parse(&"é".repeat(33)), Err(IpRangeError::TooLong { max: 64 }));
        assert_eq!(IpRange::parse(&" ".repeat(65)), Err(IpRangeError::TooLong { max: 64 }));
    }

    #[test]
    fn containment() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::", false),
            ("::/0", "2001:db8::1", true),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            // Mapped addresses are their IPv4 address, both ways.
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "11.1.2.3", false),
            ("::ffff:0:0/96", "198.51.100.1", true),
            ("::/0", "198.51.100.1", true),
            ("::/0", "0.0.0.0", true),
            ("0.0.0.0/0", "::ffff:198.51.100.1", true),
            ("::ffff:192.0.2.7", "192.0.2.7", true),
            // Other embeddings are not IPv4.
            ("10.0.0.0/8", "::10.1.2.3", false),
            ("10.0.0.0/8", "64:ff9b::10.1.2.3", false),
            ("10.0.0.0/8", "2002:a01:203::1", false),
            ("::/96", "10.1.2.3", false),
            ("::/96", "::10.1.2.3", true),
        ];
        for (r, address, expected) in cases {
            assert_eq!(range(r).contains(ip(address)), *expected, "{r} contains {address}");
        }
    }

    #[test]
    fn equality_is_coverage() {
        assert_eq!(range("::ffff:10.0.0.0/104"), range("10.0.0.0/8"));
        assert_eq!(range("::ffff:192.0.2.7"), range("192.0.2.7/32"));
        assert_eq!(range("2001:db8:0::0/32"), range("2001:DB8::/32"));
        assert_eq!(IpRange::from(ip("::ffff:192.0.2.7")), range("192.0.2.7"));
        assert_ne!(range("10.0.0.0/8"), range("10.0.0.0/9"));
        assert_ne!(range("0.0.0.0/0"), range("::/0"));
        assert_ne!(range("::192.0.2.7"), range("192.0.2.7"));
    }

    #[test]
    fn parts_of_a_range() {
        let v4 = range("::ffff:10.0.0.0/104");
        assert!(v4.is_ipv4());
        assert_eq!((v4.network(), v4.prefix_len(), v4.is_single_address()), (ip("10.0.0.0"), 8, false));
        let v6 = range("2001:db8::/32");
        assert!(!v6.is_ipv4());
        assert_eq!((v6.network(), v6.prefix_len()), (ip("2001:db8::"), 32));
        assert!(range("::ffff:0:0/96").is_ipv4());
        assert!(!range("::/0").is_ipv4());
        assert!(range("192.0.2.7").is_single_address());
        assert!(range("::1").is_single_address());
        assert_eq!(format!("{:?}", range("10.0.0.0/8")), "IpRange(10.0.0.0/8)");
    }

    #[test]
    fn new_checks_like_parse() {
        assert_eq!(IpRange::new(ip("10.0.0.0"), 8), Ok(range("10.0.0.0/8")));
        assert_eq!(IpRange::new(ip("10.0.0.0"), 33), Err(IpRangeError::PrefixOutOfRange { max: 32 }));
        assert_eq!(IpRange::new(ip("10.0.0.1"), 8), Err(IpRangeError::HostBitsSet { network: range("10.0.0.0/8") }));
        assert_eq!(IpRange::new(ip("::ffff:10.0.0.0"), 104), Ok(range("10.0.0.0/8")));
    }

    #[test]
    fn canonical_addresses() {
        let cases: &[(&str, &str)] = &[
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("192.0.2.1", "192.0.2.1"),
            ("::192.0.2.1", "::192.0.2.1"),
            ("64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::1", "::1"),
        ];
        for (address, expected) in cases {
            assert_eq!(canonical_address(ip(address)), ip(expected), "{address}");
        }
    }

    fn ranges(texts: &[&str]) -> IpRanges {
        IpRanges::new(texts.iter().map(|t| range(t)).collect()).0
    }

    #[test]
    fn lists_fold_equal_ranges_and_keep_order() {
        let (list, dropped) = IpRanges::new(
            ["10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104", "10.1.2.3", "2001:DB8::/32", "10.0.0.0/8"]
                .iter()
                .map(|t| range(t))
                .collect(),
        );
        assert_eq!(
            list.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "2001:db8::/32", "10.1.2.3"]
        );
        assert_eq!(dropped, [2, 4, 5]);
        assert_eq!(list.len(), 3);
        assert_eq!(list.as_slice().len(), 3);
        assert_eq!((&list).into_iter().count(), 3);
        assert!(IpRanges::default().is_empty());
        assert_eq!(IpRanges::new(Vec::new()), (IpRanges::default(), Vec::new()));
    }

    #[test]
    fn an_empty_list_allows_everything_and_a_list_fails_closed() {
        let empty = IpRanges::default();
        assert!(empty.allows(None), "no restriction: even an unknown client");
        assert!(empty.allows(Some(ip("203.0.113.9"))));
        let list = ranges(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(!list.allows(None), "restricted: an unknown client is refused");
        assert!(list.allows(Some(ip("10.9.9.9"))));
        assert!(list.allows(Some(ip("::ffff:10.9.9.9"))));
        assert!(list.allows(Some(ip("2001:db8::5"))));
        assert!(!list.allows(Some(ip("192.0.2.1"))));
        assert!(!list.allows(Some(ip("2001:db9::5"))));
        assert!(ranges(&["::/0"]).allows(Some(ip("192.0.2.1"))));
    }

    #[test]
    fn trusted_proxy_lists() {
        let proxies = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8,\t::1 ,10.0.0.0/8").unwrap();
        assert_eq!(proxies.to_string(), "127.0.0.1, 10.0.0.0/8, ::1");
        assert_eq!(proxies.ranges().len(), 3);
        assert!(proxies.is_trusted(ip("10.2.3.4")));
        assert!(proxies.is_trusted(ip("::ffff:127.0.0.1")));
        assert!(!proxies.is_trusted(ip("192.0.2.1")));
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::none()));
        assert_eq!(TrustedProxies::parse("  "), Ok(TrustedProxies::none()));
        assert!(!TrustedProxies::none().is_trusted(ip("127.0.0.1")));

        let error = |list: &str| TrustedProxies::parse(list).unwrap_err();
        assert_eq!(
            error("127.0.0.1, 10.0.0.1/8"),
            TrustedProxiesError {
                position: 2,
                item: "10.0.0.1/8".to_owned(),
                reason: IpRangeError::HostBitsSet { network: range("10.0.0.0/8") },
            }
        );
        assert_eq!(
            error("127.0.0.1, 10.0.0.1/8").to_string(),
            "trusted proxy 2 (\"10.0.0.1/8\"): the address has bits set after the prefix length; the network is 10.0.0.0/8"
        );
        assert_eq!(error("127.0.0.1,,::1").reason, IpRangeError::Empty);
        assert_eq!(error("127.0.0.1,,::1").position, 2);
        assert_eq!(error("127.0.0.1,").position, 2);
        assert_eq!(error("localhost").reason, IpRangeError::Address);
        assert_eq!(error("127.0.0.1 10.0.0.1").reason, IpRangeError::Whitespace);
    }

    /// X-Forwarded-For, rule by rule. Trusted: 10.0.0.0/8 and 2001:db8:f::/48.
    #[test]
    fn client_address_behind_proxies() {
        use ClientAddress::{Known, Unknown};
        let proxies = TrustedProxies::parse("10.0.0.0/8, 2001:db8:f::/48").unwrap();
        let known = |text: &str| Known(ip(text));
        let cases: &[(&str, &[&str], ClientAddress, &str)] = &[
            ("192.0.2.1", &[], known("192.0.2.1"), "untrusted peer, no header"),
            ("192.0.2.1", &["198.51.100.7"], known("192.0.2.1"), "untrusted peer: the header is spoofed"),
            ("192.0.2.1", &["garbage"], known("192.0.2.1"), "untrusted peer: the header is not even read"),
            ("::ffff:192.0.2.1", &["1.1.1.1"], known("192.0.2.1"), "the peer, canonical"),
            ("10.0.0.2", &[], known("10.0.0.2"), "trusted peer, no header: the peer"),
            ("10.0.0.2", &["198.51.100.7"], known("198.51.100.7"), "one proxy"),
            ("::ffff:10.0.0.2", &["198.51.100.7"], known("198.51.100.7"), "mapped peer is trusted"),
            ("10.0.0.2", &["1.1.1.1, 198.51.100.7"], known("198.51.100.7"), "client-made entry on the left"),
            ("10.0.0.2", &["1.1.1.1, 10.9.9.9, 198.51.100.7, 10.0.0.3"], known("198.51.100.7"), "proxy chain"),
            ("10.0.0.2", &["10.1.1.1, 198.51.100.7"], known("198.51.100.7"), "a fake proxy on the left"),
            ("10.0.0.2", &["1.1.1.1", "198.51.100.7, 10.0.0.3"], known("198.51.100.7"), "two lines, joined"),
            ("10.0.0.2", &["198.51.100.7", "10.0.0.3", "10.0.0.4"], known("198.51.100.7"), "three lines"),
            ("10.0.0.2", &["1.1.1.1", "198.51.100.7"], known("198.51.100.7"), "the last line wins"),
            ("10.0.0.2", &["10.0.0.9, 10.0.0.3"], known("10.0.0.9"), "all trusted: the leftmost"),
            ("10.0.0.2", &["10.0.0.9", "10.0.0.3"], known("10.0.0.9"), "all trusted over lines: the leftmost"),
            ("10.0.0.2", &["\t198.51.100.7 ,  10.0.0.3\t"], known("198.51.100.7"), "spaces and tabs"),
            ("10.0.0.2", &["::ffff:198.51.100.7"], known("198.51.100.7"), "a mapped client, canonical"),
            ("10.0.0.2", &["::ffff:10.0.0.3, 198.51.100.7"], known("198.51.100.7"), ""),
            ("10.0.0.2", &["198.51.100.7, ::ffff:10.0.0.3"], known("198.51.100.7"), "mapped proxy is trusted"),
            ("2001:db8:f::2", &["2001:db8:1::7, 2001:db8:f::3"], known("2001:db8:1::7"), "IPv6"),
            ("2001:db8:f::2", &["198.51.100.7"], known("198.51.100.7"), "IPv6 proxy, IPv4 client"),
            // Garbage where the walk reads it: fail closed.
            ("10.0.0.2", &["garbage"], Unknown, "not an address"),
            ("10.0.0.2", &["198.51.100.7, unknown"], Unknown, "an `unknown` hop (nginx, HAProxy)"),
            ("10.0.0.2", &["198.51.100.7:4711"], Unknown, "a port"),
            ("10.0.0.2", &["[2001:db8::7]"], Unknown, "brackets"),
            ("10.0.0.2", &["198.51.100.7, 10.0.0.3:80"], Unknown, "a port on a proxy"),
            ("10.0.0.2", &[""], Unknown, "an empty line"),
            ("10.0.0.2", &["198.51.100.7,"], Unknown, "an empty item on the right"),
            ("10.0.0.2", &["198.51.100.7,,10.0.0.3"], Unknown, "an empty item in the walk"),
            ("10.0.0.2", &["198.51.100.7", ""], Unknown, "an empty last line"),
            ("10.0.0.2", &["010.0.0.3"], Unknown, "IPv4 shorthand"),
            ("10.0.0.2", &["fe80::1%eth0"], Unknown, "a zone"),
            ("10.0.0.2", &["198.51.100.7/32"], Unknown, "a range is not an address"),
            // Garbage left of the client: never read.
            ("10.0.0.2", &["garbage, 198.51.100.7"], known("198.51.100.7"), "left of the client"),
            ("10.0.0.2", &[",,[x]:1, 198.51.100.7, 10.0.0.3"], known("198.51.100.7"), "left, behind a proxy"),
            ("10.0.0.2", &["", "198.51.100.7"], known("198.51.100.7"), "an empty line on the left"),
        ];
        for (peer, lines, expected, why) in cases {
            assert_eq!(proxies.client_address(ip(peer), lines), *expected, "{why}: peer {peer}, {lines:?}");
        }
        assert_eq!(TrustedProxies::none().client_address(ip("10.0.0.2"), &["1.1.1.1"]), known("10.0.0.2"));
    }

    #[test]
    fn client_address_feeds_allows() {
        assert_eq!(ClientAddress::Known(ip("192.0.2.1")).known(), Some(ip("192.0.2.1")));
        assert_eq!(ClientAddress::Unknown.known(), None);
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let allowed = ranges(&["198.51.100.0/24"]);
        let client = |lines: &[&str]| proxies.client_address(ip("10.0.0.2"), lines).known();
        assert!(allowed.allows(client(&["198.51.100.7"])));
        assert!(!allowed.allows(client(&["198.51.100.7, 203.0.113.1"])), "the real client is 203.0.113.1");
        assert!(!allowed.allows(client(&["198.51.100.7:80"])), "unknown fails closed");
        assert!(IpRanges::default().allows(client(&["198.51.100.7:80"])), "unless nothing is restricted");
    }
}
