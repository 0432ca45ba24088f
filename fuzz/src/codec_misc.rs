//! The other encoders in `codec`, on structured input: `hex`, `percent_encode`,
//! `canonical_params` and `duo_json` decode back to their input and match reference
//! implementations of Duo's (Python's) rules; `http_date`, `iso8601` and `civil_from_days` agree
//! with an independent days-from-civil computation.

use arbitrary::Arbitrary;
use openvpn_auth_duo::codec::{
    canonical_params, civil_from_days, duo_json, hex, http_date, iso8601, percent_encode,
};

#[derive(Debug, Arbitrary)]
pub struct Input {
    pub bytes: Vec<u8>,
    pub text: String,
    pub params: Vec<(String, String)>,
    pub unix: u64,
    pub signed: i64,
}

fn unhex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => panic!("not a hex digit: {d}"),
    }
}

fn check_hex(bytes: &[u8]) {
    let h = hex(bytes);
    assert_eq!(h.len(), bytes.len() * 2);
    assert!(
        h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{h}"
    );
    let back: Vec<u8> = h
        .as_bytes()
        .chunks(2)
        .map(|p| unhex(p[0]) << 4 | unhex(p[1]))
        .collect();
    assert_eq!(back, bytes);
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Decodes `percent_encode` output, panicking on anything it should never write.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            assert!(
                (h.is_ascii_digit() || h.is_ascii_uppercase())
                    && (l.is_ascii_digit() || l.is_ascii_uppercase()),
                "escape not upper-case hex in {s:?}"
            );
            let byte = unhex(h) << 4 | unhex(l);
            assert!(!unreserved(byte), "{byte:#x} escaped needlessly in {s:?}");
            out.push(byte);
            i += 3;
        } else {
            assert!(unreserved(b[i]), "{:?} left bare in {s:?}", b[i] as char);
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn check_percent(text: &str) {
    let e = percent_encode(text);
    assert_eq!(percent_decode(&e), text.as_bytes());
}

fn check_canonical(params: &[(String, String)]) {
    let refs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let canon = canonical_params(&refs);
    if params.is_empty() {
        assert_eq!(canon, "");
        return;
    }
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let parts: Vec<&str> = canon.split('&').collect();
    assert_eq!(parts.len(), params.len(), "{canon:?}");
    for w in parts.windows(2) {
        let a = w[0].split_once('=').expect("key=value");
        let b = w[1].split_once('=').expect("key=value");
        assert!(a <= b, "not sorted by encoded key then value: {canon:?}");
    }
    for part in parts {
        let (k, v) = part.split_once('=').expect("key=value");
        got.push((percent_decode(k), percent_decode(v)));
    }
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// Python's `json.dumps(s)` (ensure_ascii) for one string, written from its documentation.
fn python_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            '\u{8}' => out += "\\b",
            '\u{c}' => out += "\\f",
            c if (' '..='~').contains(&c) => out.push(c),
            c => {
                let n = c as u32;
                if n < 0x10000 {
                    out += &format!("\\u{n:04x}");
                } else {
                    let v = n - 0x10000;
                    out += &format!(
                        "\\u{:04x}\\u{:04x}",
                        0xd800 + (v >> 10),
                        0xdc00 + (v & 0x3ff)
                    );
                }
            }
        }
    }
    out.push('"');
    out
}

fn check_json(params: &[(String, String)]) {
    let refs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let json = duo_json(&refs);
    assert!(json.is_ascii(), "{json:?}");
    // Python: sort_keys=True, separators=(',', ':'); a dict keeps one value a key, so compare
    // only when keys are unique.
    let mut keys: Vec<&str> = refs.iter().map(|p| p.0).collect();
    keys.sort();
    keys.dedup();
    if keys.len() == refs.len() {
        let mut sorted = refs.clone();
        sorted.sort_by_key(|p| p.0.chars().map(|c| c as u32).collect::<Vec<_>>());
        let body: Vec<String> = sorted
            .iter()
            .map(|(k, v)| format!("{}:{}", python_json_string(k), python_json_string(v)))
            .collect();
        assert_eq!(json, format!("{{{}}}", body.join(",")));
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).expect("duo_json writes valid JSON");
        assert_eq!(parsed.len(), refs.len());
        for (k, v) in &refs {
            assert_eq!(parsed[*k].as_str(), Some(*v));
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, counted the slow obvious way from
/// 400-year cycles (146097 days each) so it does not share code or shape with the fast version.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    fn leap(y: i64) -> bool {
        y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    }
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let cycles = (y - 1970).div_euclid(400);
    let mut year = 1970 + cycles * 400;
    let mut days = cycles * 146_097;
    while year < y {
        days += if leap(year) { 366 } else { 365 };
        year += 1;
    }
    days += CUM[(m - 1) as usize] + i64::from(d) - 1;
    if m > 2 && leap(y) {
        days += 1;
    }
    days
}

fn month_len(y: i64, m: u32) -> u32 {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][(m - 1) as usize]
}

fn check_civil(days: i64) {
    let (y, m, d) = civil_from_days(days);
    assert!(
        (1..=12).contains(&m) && d >= 1 && d <= month_len(y, m),
        "{days} -> {y}-{m}-{d}"
    );
    assert_eq!(days_from_civil(y, m, d), days, "{days} -> {y}-{m}-{d}");
}

fn check_http_date(unix: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let s = http_date(unix);
    // "Tue, 21 Aug 2012 17:29:18 -0000"
    let f: Vec<&str> = s.split(' ').collect();
    assert_eq!(f.len(), 6, "{s:?}");
    assert_eq!(f[5], "-0000");
    let days = (unix / 86_400) as i64;
    assert_eq!(f[0], format!("{},", DAYS[(days % 7) as usize]), "{s:?}");
    assert_eq!(f[1].len(), 2, "{s:?}");
    let d: u32 = f[1].parse().expect("day");
    let m = MONTHS.iter().position(|&n| n == f[2]).expect("month") as u32 + 1;
    let y: i64 = f[3].parse().expect("year");
    assert_eq!(days_from_civil(y, m, d), days, "{s:?}");
    let hms: Vec<u64> = f[4].split(':').map(|x| x.parse().expect("time")).collect();
    assert_eq!(f[4].len(), 8, "{s:?}");
    assert_eq!(hms[0] * 3600 + hms[1] * 60 + hms[2], unix % 86_400, "{s:?}");
}

fn check_iso8601(unix: i64) {
    let s = iso8601(unix);
    // "YYYY-MM-DDTHH:MM:SSZ"; the year may be longer or negative far from now.
    let (year, rest) = s.split_at(s.len() - 16);
    assert!(year.len() >= 4, "{s:?}");
    let y: i64 = year.parse().expect("year");
    let b = rest.as_bytes();
    assert_eq!(
        (b[0], b[3], b[6], b[9], b[12], b[15]),
        (b'-', b'-', b'T', b':', b':', b'Z'),
        "{s:?}"
    );
    let n = |r: std::ops::Range<usize>| -> i128 { rest[r].parse().expect("number") };
    let days = i128::from(days_from_civil(y, n(1..3) as u32, n(4..6) as u32));
    let back = days * 86_400 + n(7..9) * 3600 + n(10..12) * 60 + n(13..15);
    assert_eq!(back, i128::from(unix), "{s:?}");
}

pub fn check(input: &Input) {
    check_hex(&input.bytes);
    check_percent(&input.text);
    // Duo requests carry a handful of parameters; hundreds only make the sorts slow to fuzz.
    let params = &input.params[..input.params.len().min(32)];
    check_canonical(params);
    check_json(params);
    check_http_date(input.unix);
    check_iso8601(input.signed);
    // The range callers can reach: unix seconds (signed or not) divided into days.
    check_civil(input.signed / 86_400);
    check_civil(input.signed.wrapping_mul(7) % 200_000_000);
}
