//! Property tests of IP ranges and client addresses: containment agrees
//! with plain integer masking (IPv4 as `::ffff:a.b.c.d`), a range reads
//! back from its text, host bits are refused, a list allows what any of its
//! ranges contains, and behind proxies the client is the rightmost address
//! that is not a trusted proxy, whatever the client wrote to its left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use latchkey_domain::ip::{ClientAddress, IpRange, IpRangeError, IpRanges, TrustedProxies};
use proptest::prelude::*;

// The oracles: masking written out here, apart from the module's code.

fn oracle_v4(network: u32, prefix: u8, address: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    address & mask == network & mask
}

fn oracle_v6(network: u128, prefix: u8, address: u128) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    address & mask == network & mask
}

/// `a.b.c.d` as `::ffff:a.b.c.d`, bit by bit.
fn mapped_bits(address: u32) -> u128 {
    (0xffff_u128 << 32) | u128::from(address)
}

fn mapped(address: Ipv4Addr) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from_bits(mapped_bits(address.to_bits())))
}

/// An IPv4 network (host bits cleared) and its prefix length.
fn v4_network() -> impl Strategy<Value = (u32, u8)> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        (bits & mask, prefix)
    })
}

/// IPv6 bits, with the interesting regions (mapped, compatible, zeros)
/// more likely than chance would make them.
fn v6_bits() -> impl Strategy<Value = u128> {
    prop_oneof![
        4 => any::<u128>(),
        2 => any::<u32>().prop_map(mapped_bits),
        1 => any::<u32>().prop_map(u128::from),
        1 => any::<u16>().prop_map(|x| u128::from(x) << 112),
        1 => Just(0u128),
    ]
}

/// An IPv6 network (host bits cleared) and its prefix length.
fn v6_network() -> impl Strategy<Value = (u128, u8)> {
    (v6_bits(), 0u8..=128).prop_map(|(bits, prefix)| {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        (bits & mask, prefix)
    })
}

/// An address that is inside `network/prefix` about half of the time.
fn near_v4(network: u32, prefix: u8) -> impl Strategy<Value = u32> {
    let host = if prefix == 0 { u32::MAX } else { !(u32::MAX << (32 - prefix)) };
    prop_oneof![any::<u32>().prop_map(move |x| network | (x & host)), any::<u32>()]
}

fn near_v6(network: u128, prefix: u8) -> impl Strategy<Value = u128> {
    let host = if prefix == 0 { u128::MAX } else { !(u128::MAX << (128 - prefix)) };
    prop_oneof![any::<u128>().prop_map(move |x| network | (x & host)), v6_bits()]
}

fn v4_range(network: u32, prefix: u8) -> IpRange {
    IpRange::parse(&format!("{}/{prefix}", Ipv4Addr::from_bits(network))).unwrap()
}

fn v6_range(network: u128, prefix: u8) -> IpRange {
    IpRange::parse(&format!("{}/{prefix}", Ipv6Addr::from_bits(network))).unwrap()
}

/// Any range, IPv4 or IPv6.
fn any_range() -> impl Strategy<Value = IpRange> {
    prop_oneof![
        v4_network().prop_map(|(network, prefix)| v4_range(network, prefix)),
        v6_network().prop_map(|(network, prefix)| v6_range(network, prefix)),
    ]
}

proptest! {
    /// (a) IPv4: containment is masking, and an address or range means the
    /// same as its IPv4-mapped form, in all four combinations.
    #[test]
    fn ipv4_containment_is_masking_in_one_space(
        (network, prefix, address) in v4_network()
            .prop_flat_map(|(network, prefix)| (Just(network), Just(prefix), near_v4(network, prefix)))
    ) {
        let expected = oracle_v4(network, prefix, address);
        let range = v4_range(network, prefix);
        let mapped_range = IpRange::parse(&format!("::ffff:{}/{}", Ipv4Addr::from_bits(network), 96 + prefix)).unwrap();
        let v4 = IpAddr::V4(Ipv4Addr::from_bits(address));
        let v6 = mapped(Ipv4Addr::from_bits(address));
        prop_assert_eq!(mapped_range, range);
        prop_assert_eq!(range.contains(v4), expected);
        prop_assert_eq!(range.contains(v6), expected);
        prop_assert_eq!(mapped_range.contains(v4), expected);
        prop_assert_eq!(mapped_range.contains(v6), expected);
    }

    /// (a) IPv6: containment is masking, and an IPv4 address is tested as
    /// its mapped form.
    #[test]
    fn ipv6_containment_is_masking(
        (network, prefix, address, v4) in v6_network().prop_flat_map(|(network, prefix)| {
            (Just(network), Just(prefix), near_v6(network, prefix), any::<u32>())
        })
    ) {
        let range = v6_range(network, prefix);
        prop_assert_eq!(range.contains(IpAddr::V6(Ipv6Addr::from_bits(address))), oracle_v6(network, prefix, address));
        prop_assert_eq!(
            range.contains(IpAddr::V4(Ipv4Addr::from_bits(v4))),
            oracle_v6(network, prefix, mapped_bits(v4))
        );
    }

    /// (b) A range's text reads back as the same range, and is canonical.
    #[test]
    fn display_reads_back(range in any_range()) {
        let text = range.to_string();
        let again = IpRange::parse(&text).unwrap();
        prop_assert_eq!(again, range);
        prop_assert_eq!(again.to_string(), text.clone());
        prop_assert_eq!(text.contains('/'), !range.is_single_address());
        prop_assert_eq!(IpRange::new(range.network(), range.prefix_len()), Ok(range));
    }

    /// (c) A network with host bits is refused unless they are all zero,
    /// and the error names the network.
    #[test]
    fn host_bits_are_refused(
        (network, prefix) in prop_oneof![
            v4_network().prop_map(|(n, p)| (mapped_bits(n), p + 96)),
            v6_network(),
        ],
        host in any::<u128>(),
        clear in any::<bool>(),
    ) {
        let host_mask = if prefix == 0 { u128::MAX } else { !(u128::MAX << (128 - prefix)) };
        let host = if clear { 0 } else { host & host_mask };
        let address = Ipv6Addr::from_bits(network | host);
        // Write IPv4 ranges as IPv4, which is how they are usually written.
        let text = match address.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => format!("{v4}/{}", prefix - 96),
            _ => format!("{address}/{prefix}"),
        };
        let expected_network = IpRange::new(IpAddr::V6(Ipv6Addr::from_bits(network)), prefix).unwrap();
        if host == 0 {
            prop_assert_eq!(IpRange::parse(&text), Ok(expected_network));
        } else {
            prop_assert_eq!(IpRange::parse(&text), Err(IpRangeError::HostBitsSet { network: expected_network }));
        }
    }

    /// (d) A list allows exactly what any of its ranges contains; an empty
    /// list allows everything, and an unknown client only then. Folding
    /// duplicates changes nothing.
    #[test]
    fn lists_allow_what_any_range_contains(
        pool in prop::collection::vec(any_range(), 1..6),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        kind in 0u8..4,
        random in prop_oneof![
            any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from_bits(x))),
            any::<u32>().prop_map(|x| mapped(Ipv4Addr::from_bits(x))),
            v6_bits().prop_map(|x| IpAddr::V6(Ipv6Addr::from_bits(x))),
        ],
        inside in any::<prop::sample::Index>(),
        host in any::<u128>(),
    ) {
        let given: Vec<IpRange> = picks.iter().map(|pick| pool[pick.index(pool.len())]).collect();
        let address = match kind {
            0 => None,
            // An address inside one of the ranges, IPv4 ones written either way.
            1 | 2 if !given.is_empty() => {
                let range = inside.get(&given);
                let (bits, prefix) = match range.network() {
                    IpAddr::V4(v4) => (mapped_bits(v4.to_bits()), range.prefix_len() + 96),
                    IpAddr::V6(v6) => (v6.to_bits(), range.prefix_len()),
                };
                let host_mask = if prefix == 0 { u128::MAX } else { !(u128::MAX << (128 - prefix)) };
                let address = IpAddr::V6(Ipv6Addr::from_bits(bits | (host & host_mask)));
                Some(if kind == 1 { address } else { canonical(address) })
            }
            _ => Some(random),
        };
        let naive = given.is_empty() || address.is_some_and(|a| given.iter().any(|r| r.contains(a)));
        if matches!(kind, 1 | 2) && !given.is_empty() {
            prop_assert!(naive, "the address was taken from inside a range");
        }
        let (list, dropped) = IpRanges::new(given.clone());
        prop_assert_eq!(list.allows(address), naive);
        prop_assert_eq!(list.len() + dropped.len(), given.len());
        for index in &dropped {
            prop_assert!(given[..*index].contains(&given[*index]), "only later copies are dropped");
        }
        let kept: Vec<IpRange> = list.iter().copied().collect();
        for (i, range) in kept.iter().enumerate() {
            prop_assert!(!kept[..i].contains(range), "no duplicates are kept");
        }
    }
}

/// Trusted in the XFF properties: 10.0.0.0/8 and 2001:db8:f::/48.
fn proxies() -> TrustedProxies {
    TrustedProxies::parse("10.0.0.0/8, 2001:db8:f::/48").unwrap()
}

fn trusted_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 | (x & 0x00ff_ffff)))),
        any::<u32>().prop_map(|x| mapped(Ipv4Addr::from_bits(0x0a00_0000 | (x & 0x00ff_ffff)))),
        any::<u128>().prop_map(|x| {
            let network = 0x2001_0db8_000f_u128 << 80;
            IpAddr::V6(Ipv6Addr::from_bits(network | (x & ((1 << 80) - 1))))
        }),
    ]
}

fn untrusted_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from_bits(x))),
        any::<u32>().prop_map(|x| mapped(Ipv4Addr::from_bits(x))),
        v6_bits().prop_map(|x| IpAddr::V6(Ipv6Addr::from_bits(x))),
    ]
    .prop_filter("not a trusted proxy", |address| !proxies().is_trusted(*address))
}

/// What a client may write on the left: anything without a comma.
fn client_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^,]{0,16}",
        untrusted_address().prop_map(|a| a.to_string()),
        trusted_address().prop_map(|a| a.to_string()),
        Just("unknown".to_owned()),
        Just("[2001:db8::1]:80".to_owned()),
    ]
}

/// The items written as header lines: each item padded with spaces or
/// tabs, and lines broken after the items `breaks` picks.
fn as_lines(items: &[String], breaks: &[bool], pads: &[(usize, usize)]) -> Vec<String> {
    const PADS: [&str; 4] = ["", " ", "\t", "  "];
    let mut lines: Vec<Vec<String>> = vec![Vec::new()];
    for (i, item) in items.iter().enumerate() {
        let (before, after) = pads[i % pads.len()];
        lines.last_mut().unwrap().push(format!("{}{item}{}", PADS[before % 4], PADS[after % 4]));
        if breaks[i % breaks.len()] && i + 1 < items.len() {
            lines.push(Vec::new());
        }
    }
    lines.iter().map(|line| line.join(",")).collect()
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

proptest! {
    /// (e) Behind a trusted peer, the client is the rightmost address that
    /// is not a trusted proxy, whatever the client wrote to its left.
    #[test]
    fn the_rightmost_untrusted_address_is_the_client(
        junk in prop::collection::vec(client_junk(), 0..4),
        client in untrusted_address(),
        hops in prop::collection::vec(trusted_address(), 0..4),
        peer in trusted_address(),
        breaks in prop::collection::vec(any::<bool>(), 1..8),
        pads in prop::collection::vec((0usize..4, 0usize..4), 1..8),
    ) {
        let items: Vec<String> =
            junk.into_iter().chain([client.to_string()]).chain(hops.iter().map(ToString::to_string)).collect();
        let lines = as_lines(&items, &breaks, &pads);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        prop_assert_eq!(proxies().client_address(peer, &lines), ClientAddress::Known(canonical(client)));
        // The same header from an untrusted peer is ignored.
        prop_assert_eq!(proxies().client_address(client, &lines), ClientAddress::Known(canonical(client)));
    }

    /// (e) When every listed address is a trusted proxy, the leftmost is
    /// the client; with garbage among the proxies, nobody is.
    #[test]
    fn all_trusted_is_the_leftmost_and_garbage_is_unknown(
        hops in prop::collection::vec(trusted_address(), 1..6),
        peer in trusted_address(),
        garbage in prop_oneof![
            Just(String::new()),
            Just("unknown".to_owned()),
            Just("10.0.0.1:80".to_owned()),
            Just("[2001:db8:f::1]".to_owned()),
            "[a-z]{1,8}",
        ],
        at in any::<prop::sample::Index>(),
        breaks in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let items: Vec<String> = hops.iter().map(ToString::to_string).collect();
        let lines = as_lines(&items, &breaks, &[(0, 0)]);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        prop_assert_eq!(proxies().client_address(peer, &lines), ClientAddress::Known(canonical(hops[0])));

        let mut with_garbage = items.clone();
        with_garbage.insert(at.index(items.len() + 1), garbage);
        let lines = as_lines(&with_garbage, &breaks, &[(0, 0)]);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        prop_assert_eq!(proxies().client_address(peer, &lines), ClientAddress::Unknown);
    }
}
