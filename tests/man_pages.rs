//! Keeps the manual pages (man/) and the shipped example configuration in step with the code.
//!
//! What the code has comes from the code itself, never from a list kept here:
//! - flags, arguments and subcommands from clap's own description of the CLI
//!   (`<Cli as CommandFactory>::command()`), built so clap's `--help`/`--version` are included;
//! - configuration sections and keys from the real parser: `Config::parse` is fed a valid config
//!   plus one unknown key per section, and its "unknown field ..., expected ..." error lists the
//!   keys serde knows;
//! - OpenVPN environment variables from `openvpn::ENV_VARS`.
//!
//! What the pages say is read from their mdoc source with the conventions noted at the top of
//! each page: `.It` entries of OPTIONS / COMMANDS / ENVIRONMENT in openvpn-auth-duo.8, and
//! `.Ss [section]` headings with `.It Ic key` entries in auth-duo.toml.5. Both directions are
//! checked: in code but not in the pages, and in the pages but not in code.

use clap::CommandFactory;
use openvpn_auth_duo::cli::Cli;
use openvpn_auth_duo::config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

const PAGE_8: &str = "man/openvpn-auth-duo.8";
const PAGE_5: &str = "man/auth-duo.toml.5";
const EXAMPLE_CONFIG: &str = "packaging/auth-duo.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// mdoc source reading

/// One macro line of mdoc source, split into words (quotes honoured, `\-` → `-`, `\&` dropped).
fn macro_words(line: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix('.')?;
    if rest.starts_with("\\\"") {
        return None; // a comment
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('-') => cur.push('-'),
                Some('&') => {}
                Some('e') => cur.push('\\'),
                Some(o) => {
                    cur.push('\\');
                    cur.push(o);
                }
                None => {}
            },
            ' ' | '\t' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Some(words)
}

/// mdoc macros that may appear inside an `.It` line; anything else is a plain word.
fn is_macro(w: &str) -> bool {
    matches!(
        w,
        "Ar" | "Fl"
            | "Op"
            | "Oo"
            | "Oc"
            | "Cm"
            | "Ns"
            | "No"
            | "Pq"
            | "Li"
            | "Ic"
            | "Ev"
            | "Pa"
            | "Sy"
            | "Em"
            | "Qq"
            | "Dq"
            | "Xr"
            | "Nm"
            | "Va"
            | "Vt"
    )
}

/// An `.It` line read as a CLI entry: subcommand words after `Cm`, flags after `Fl`, and
/// positional arguments (`Ar` not directly after a flag).
#[derive(Debug, Default, Clone)]
struct Entry {
    line: usize,
    path: Vec<String>,
    flags: BTreeSet<String>,
    positionals: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn parse_entry(line: usize, words: &[String]) -> Entry {
    let mut e = Entry {
        line,
        ..Entry::default()
    };
    let mut i = 1; // words[0] == "It"
    let mut after_flag = false;
    while i < words.len() {
        match words[i].as_str() {
            "Cm" => {
                i += 1;
                while i < words.len() && !is_macro(&words[i]) && words[i] != "," {
                    e.path.push(words[i].clone());
                    i += 1;
                }
                after_flag = false;
                continue;
            }
            "Fl" if i + 1 < words.len() => {
                e.flags.insert(format!("-{}", words[i + 1]));
                i += 2;
                after_flag = true;
                continue;
            }
            "Ar" if i + 1 < words.len() => {
                if !after_flag {
                    e.positionals.insert(words[i + 1].clone());
                }
                after_flag = false;
                i += 2;
                continue;
            }
            "Ev" if i + 1 < words.len() => {
                e.env.insert(words[i + 1].clone());
                i += 2;
                continue;
            }
            "Op" | "Oo" | "Oc" | "," => {}
            _ => after_flag = false,
        }
        i += 1;
    }
    e
}

/// `.It` entries per `.Sh` section, plus every flag named anywhere in the page.
struct Page8 {
    sections: BTreeMap<String, Vec<Entry>>,
    all_flags: BTreeMap<String, usize>,
}

fn read_page_8() -> Page8 {
    let text = read(PAGE_8);
    let mut sections: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut all_flags = BTreeMap::new();
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let Some(words) = macro_words(line) else {
            continue;
        };
        if words.first().map(String::as_str) == Some("Sh") {
            current = words[1..].join(" ");
            continue;
        }
        for pair in words.windows(2) {
            if pair[0] == "Fl" {
                all_flags.entry(format!("-{}", pair[1])).or_insert(n + 1);
            }
        }
        if words.first().map(String::as_str) == Some("It") {
            sections
                .entry(current.clone())
                .or_default()
                .push(parse_entry(n + 1, &words));
        }
    }
    Page8 {
        sections,
        all_flags,
    }
}

// ---------------------------------------------------------------------------------------------
// What the code has

#[derive(Debug, Default)]
struct CodeCommand {
    flags: BTreeSet<String>,
    positionals: BTreeSet<String>,
    has_children: bool,
}

fn arg_names(arg: &clap::Arg, flags: &mut BTreeSet<String>, positionals: &mut BTreeSet<String>) {
    if arg.is_positional() {
        let name = arg
            .get_value_names()
            .and_then(|v| v.first().map(|s| s.to_string()))
            .unwrap_or_else(|| arg.get_id().as_str().to_string());
        positionals.insert(name.to_ascii_lowercase().replace('_', "-"));
        return;
    }
    if let Some(l) = arg.get_long() {
        flags.insert(format!("--{l}"));
    }
    if let Some(s) = arg.get_short() {
        flags.insert(format!("-{s}"));
    }
}

/// The built clap command: top-level flags (with clap's help/version) and every subcommand path
/// with its own flags and arguments (global flags and clap's help excluded: they are the
/// top-level ones). clap's generated `help` subcommand is left out; the page mentions it in prose.
fn code_cli() -> (CodeCommand, BTreeMap<String, CodeCommand>) {
    let mut cmd = Cli::command();
    cmd.build();
    let mut top = CodeCommand::default();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        arg_names(arg, &mut top.flags, &mut top.positionals);
    }
    let mut subs = BTreeMap::new();
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut BTreeMap<String, CodeCommand>) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" || sub.is_hide_set() {
                continue;
            }
            let path = format!("{prefix}{}", sub.get_name()).trim().to_string();
            let mut c = CodeCommand {
                has_children: sub.get_subcommands().any(|s| s.get_name() != "help"),
                ..CodeCommand::default()
            };
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_global_set() || id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                arg_names(arg, &mut c.flags, &mut c.positionals);
            }
            walk(sub, &format!("{path} "), out);
            out.insert(path, c);
        }
    }
    walk(&cmd, "", &mut subs);
    (top, subs)
}

const VALID_DUO: &str = "[duo]\n\
integration_key = \"DIABCDEFGHIJKLMNOPQR\"\n\
secret_key = \"0123456789abcdef0123456789abcdef01234567\"\n\
api_hostname = \"api-1234abcd.duosecurity.com\"\n";

/// The keys the parser accepts in one table, read from its unknown-field error.
fn keys_from_parser(text: &str, what: &str) -> BTreeSet<String> {
    let err = match Config::parse(text) {
        Ok(_) => panic!("{what}: the parser accepted an unknown key; is deny_unknown_fields gone?"),
        Err(e) => e,
    };
    let tail = err
        .split_once("unknown field `zz_not_a_key`")
        .and_then(|(_, t)| t.split_once("expected"))
        .map(|(_, t)| t)
        .unwrap_or_else(|| {
            panic!(
                "{what}: parser error no longer reads \"unknown field ..., expected ...\": {err}"
            )
        });
    let keys: BTreeSet<String> = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{what}: no keys in parser error: {err}");
    keys
}

/// Top-level tables and the keys of each, as the parser knows them.
fn code_config() -> BTreeMap<String, BTreeSet<String>> {
    assert!(
        Config::parse(VALID_DUO).is_ok(),
        "the minimal config of this test no longer parses: {:?}",
        Config::parse(VALID_DUO).err()
    );
    let mut out = BTreeMap::new();
    let tables = keys_from_parser(&format!("zz_not_a_key = 1\n{VALID_DUO}"), "top level");
    for table in tables {
        let text = if table == "duo" {
            format!("{VALID_DUO}zz_not_a_key = 1\n")
        } else {
            format!("{VALID_DUO}[{table}]\nzz_not_a_key = 1\n")
        };
        let keys = keys_from_parser(&text, &format!("[{table}]"));
        out.insert(table, keys);
    }
    out
}

/// `.Ss` headings holding `[name]` and the `.It Ic key` entries under each.
fn page_config() -> BTreeMap<String, BTreeSet<String>> {
    let text = read(PAGE_5);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let Some(words) = macro_words(line) else {
            continue;
        };
        match words.first().map(String::as_str) {
            Some("Sh") => current = None,
            Some("Ss") => {
                current = words.iter().find_map(|w| {
                    w.strip_prefix('[')
                        .and_then(|w| w.strip_suffix(']'))
                        .map(str::to_string)
                });
                if let Some(c) = &current {
                    out.entry(c.clone()).or_default();
                }
            }
            Some("It") if words.get(1).map(String::as_str) == Some("Ic") => {
                if let (Some(section), Some(key)) = (&current, words.get(2)) {
                    out.get_mut(section).unwrap().insert(key.clone());
                }
            }
            _ => {}
        }
    }
    out
}

fn diff(what: &str, code: &BTreeSet<String>, page: &BTreeSet<String>, problems: &mut Vec<String>) {
    for x in code.difference(page) {
        problems.push(format!("{what}: `{x}` is in the code but not in the page"));
    }
    for x in page.difference(code) {
        problems.push(format!("{what}: `{x}` is in the page but not in the code"));
    }
}

fn report(problems: Vec<String>, page: &str) {
    assert!(
        problems.is_empty(),
        "{page} is out of step with the code:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn page_8_options_match_the_cli() {
    let page = read_page_8();
    let (top, _) = code_cli();
    let entries = page.sections.get("OPTIONS").cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{PAGE_8} has no OPTIONS entries");
    let mut flags = BTreeSet::new();
    let mut positionals = BTreeSet::new();
    for e in &entries {
        assert!(
            e.path.is_empty(),
            "line {}: a subcommand in OPTIONS",
            e.line
        );
        flags.extend(e.flags.iter().cloned());
        positionals.extend(e.positionals.iter().cloned());
    }
    let mut problems = Vec::new();
    diff("OPTIONS flag", &top.flags, &flags, &mut problems);
    diff(
        "OPTIONS argument",
        &top.positionals,
        &positionals,
        &mut problems,
    );
    report(problems, PAGE_8);
}

#[test]
fn page_8_commands_match_the_cli() {
    let page = read_page_8();
    let (_, code) = code_cli();
    let entries = page.sections.get("COMMANDS").cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{PAGE_8} has no COMMANDS entries");
    let mut problems = Vec::new();
    let mut documented = BTreeSet::new();
    for e in &entries {
        if e.path.is_empty() {
            problems.push(format!("line {}: COMMANDS entry without `Cm`", e.line));
            continue;
        }
        let path = e.path.join(" ");
        for n in 1..=e.path.len() {
            documented.insert(e.path[..n].join(" "));
        }
        match code.get(&path) {
            Some(c) => {
                if c.has_children {
                    problems.push(format!(
                        "`{path}` has subcommands: document each (`{path} ...`), not `{path}` itself"
                    ));
                }
                diff(&format!("`{path}` flag"), &c.flags, &e.flags, &mut problems);
                diff(
                    &format!("`{path}` argument"),
                    &c.positionals,
                    &e.positionals,
                    &mut problems,
                );
            }
            None => problems.push(format!(
                "subcommand `{path}` (line {}) is in the page but not in the code",
                e.line
            )),
        }
    }
    for (path, c) in &code {
        let exact = entries.iter().any(|e| e.path.join(" ") == *path);
        if (c.has_children && !documented.contains(path)) || (!c.has_children && !exact) {
            problems.push(format!(
                "subcommand `{path}` is in the code but not in the page"
            ));
        }
    }
    report(problems, PAGE_8);
}

#[test]
fn page_8_names_no_flag_it_does_not_document() {
    let page = read_page_8();
    let mut documented = BTreeSet::new();
    for section in ["OPTIONS", "COMMANDS"] {
        for e in page.sections.get(section).into_iter().flatten() {
            documented.extend(e.flags.iter().cloned());
        }
    }
    let stray: Vec<String> = page
        .all_flags
        .iter()
        .filter(|(f, _)| !documented.contains(*f))
        .map(|(f, line)| format!("line {line}: `{f}` is not an OPTIONS or COMMANDS flag"))
        .collect();
    report(stray, PAGE_8);
}

#[test]
fn page_8_environment_matches_what_is_read() {
    let page = read_page_8();
    let mut code: BTreeSet<String> = openvpn_auth_duo::openvpn::ENV_VARS
        .iter()
        .map(|s| s.to_string())
        .collect();
    // via-env credentials, read in commands.rs rather than through ENV_VARS.
    code.insert("username".into());
    code.insert("password".into());
    let documented: BTreeSet<String> = page
        .sections
        .get("ENVIRONMENT")
        .into_iter()
        .flatten()
        .flat_map(|e| e.env.iter().cloned())
        .collect();
    let mut problems = Vec::new();
    diff("environment variable", &code, &documented, &mut problems);
    report(problems, PAGE_8);
}

#[test]
fn page_8_states_the_exit_codes_of_the_code() {
    let text = read(PAGE_8);
    let section: String = text
        .split(".Sh EXIT STATUS")
        .nth(1)
        .and_then(|s| s.split("\n.Sh ").next())
        .unwrap_or_else(|| panic!("{PAGE_8} has no EXIT STATUS section"))
        .to_string();
    for code in [
        openvpn_auth_duo::EXIT_ALLOW,
        openvpn_auth_duo::EXIT_DENY,
        openvpn_auth_duo::EXIT_DEFERRED,
    ] {
        assert!(
            section.contains(&format!("\n.It {code}\n")),
            "EXIT STATUS of {PAGE_8} lacks exit code {code}"
        );
    }
    // The --help text states them too; the page must agree with it.
    assert!(openvpn_auth_duo::cli::AFTER_HELP.contains("0 allow, 1 deny"));
}

#[test]
fn page_5_sections_and_keys_match_the_parser() {
    let code = code_config();
    let page = page_config();
    let mut problems = Vec::new();
    diff(
        "section",
        &code.keys().cloned().collect(),
        &page.keys().cloned().collect(),
        &mut problems,
    );
    for (table, keys) in &code {
        if let Some(documented) = page.get(table) {
            diff(&format!("[{table}] key"), keys, documented, &mut problems);
        }
    }
    report(problems, PAGE_5);
}

/// Text of the `.Bd -literal` blocks of a page that hold a configuration (start with `[duo]`).
fn config_examples(page: &str) -> Vec<String> {
    let text = read(page);
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(".Bd -literal") {
            block = Some(String::new());
        } else if line.starts_with(".Ed") {
            if let Some(b) = block.take() {
                if b.starts_with("[duo]") {
                    out.push(b);
                }
            }
        } else if let Some(b) = block.as_mut() {
            b.push_str(&line.replace("\\e", "\\"));
            b.push('\n');
        }
    }
    out
}

/// The placeholders of the shipped example, replaced by well-formed values.
fn fill_placeholders(text: &str) -> String {
    text.replace("DIXXXXXXXXXXXXXXXXXX", "DIABCDEFGHIJKLMNOPQR")
        .replace(
            "REPLACE-WITH-YOUR-SECRET-KEY",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .replace(
            "api-xxxxxxxx.duosecurity.com",
            "api-1234abcd.duosecurity.com",
        )
}

#[test]
fn page_5_examples_parse() {
    let examples = config_examples(PAGE_5);
    assert!(
        examples.len() >= 2,
        "{PAGE_5}: expected at least two example files"
    );
    let code = code_config();
    for (i, ex) in examples.iter().enumerate() {
        if let Err(e) = Config::parse(&fill_placeholders(ex)) {
            panic!("{PAGE_5} example {}: {e}\n{ex}", i + 1);
        }
    }
    // The first example shows every key, set or commented out.
    let mut problems = Vec::new();
    let shown = keys_in_file(&examples[0]);
    for (table, keys) in &code {
        diff(
            &format!("first example, [{table}] key"),
            keys,
            shown.get(table).unwrap_or(&BTreeSet::new()),
            &mut problems,
        );
    }
    report(problems, PAGE_5);
}

/// Keys named in a config file per table, including commented-out `#key = ...` lines.
fn keys_in_file(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = t.to_string();
            out.entry(table.clone()).or_default();
            continue;
        }
        let body = line.strip_prefix('#').unwrap_or(line).trim_start();
        if let Some((key, _)) = body.split_once(" = ") {
            if !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                out.entry(table.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
    }
    out
}

#[test]
fn shipped_example_config_is_refused_until_filled_and_names_every_key() {
    let text = read(EXAMPLE_CONFIG);
    let err = Config::parse(&text).expect_err("the shipped example must not work as it is");
    assert!(err.contains("placeholder"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    let filled = fill_placeholders(&text);
    Config::parse(&filled).unwrap_or_else(|e| panic!("{EXAMPLE_CONFIG} with keys filled in: {e}"));
    // Every commented-out setting must also be valid when enabled (secret_key_file replaces
    // secret_key, so it is left commented).
    let enabled: String = filled
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(s) if s.contains(" = ") && !s.starts_with("secret_key_file") => s,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    Config::parse(&enabled)
        .unwrap_or_else(|e| panic!("{EXAMPLE_CONFIG} with every setting enabled: {e}"));
    let code = code_config();
    let shown = keys_in_file(&text);
    let mut problems = Vec::new();
    diff(
        "section",
        &code.keys().cloned().collect(),
        &shown.keys().filter(|k| !k.is_empty()).cloned().collect(),
        &mut problems,
    );
    for (table, keys) in &code {
        diff(
            &format!("[{table}] key"),
            keys,
            shown.get(table).unwrap_or(&BTreeSet::new()),
            &mut problems,
        );
    }
    report(problems, EXAMPLE_CONFIG);
}

#[test]
fn packages_ship_the_pages_from_man() {
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml parses");
    let meta = &manifest["package"]["metadata"];
    let deb_sources: Vec<String> = meta["deb"]["assets"]
        .as_array()
        .expect("deb assets")
        .iter()
        .filter_map(|a| a.as_array().and_then(|a| a[0].as_str()).map(str::to_string))
        .collect();
    let rpm_sources: Vec<String> = meta["generate-rpm"]["assets"]
        .as_array()
        .expect("rpm assets")
        .iter()
        .filter_map(|a| a.get("source").and_then(|s| s.as_str()).map(str::to_string))
        .collect();
    for wanted in [
        PAGE_8,
        PAGE_5,
        EXAMPLE_CONFIG,
        "target/release/openvpn-auth-duo",
    ] {
        assert!(
            deb_sources.iter().any(|s| s == wanted),
            "deb assets lack {wanted}"
        );
        assert!(
            rpm_sources.iter().any(|s| s == wanted),
            "rpm assets lack {wanted}"
        );
    }
}

#[test]
fn debian_changelog_is_at_the_crate_version() {
    let changelog = read("packaging/debian/changelog");
    let first = changelog.lines().next().unwrap_or("");
    let version = format!("({}-", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with("openvpn-auth-duo ") && first.contains(&version),
        "packaging/debian/changelog starts with {first:?}; add an entry for {}",
        env!("CARGO_PKG_VERSION")
    );
}

// ---------------------------------------------------------------------------------------------
// Formatting: the pages must render without warnings.

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|_| true)
        .unwrap_or(false)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn pages() -> Vec<PathBuf> {
    [PAGE_8, PAGE_5].iter().map(|p| root().join(p)).collect()
}

#[test]
fn pages_pass_mandoc_lint() {
    if !have("mandoc") {
        assert!(
            !in_ci(),
            "mandoc is missing, so the man pages cannot be linted; apt-get install mandoc"
        );
        eprintln!(
            "SKIPPED pages_pass_mandoc_lint: mandoc is not installed (apt-get install mandoc)"
        );
        return;
    }
    let out = Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(pages())
        .output()
        .expect("run mandoc");
    let msgs =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && msgs.trim().is_empty(),
        "mandoc -T lint -W warning complains (exit {:?}):\n{msgs}",
        out.status.code()
    );
}

#[test]
fn pages_pass_groff_warnings() {
    // lintian runs the pages through groff (man-db), so groff must be quiet too.
    if !have("groff") {
        assert!(!in_ci(), "groff is missing; apt-get install groff-base");
        eprintln!("SKIPPED pages_pass_groff_warnings: groff is not installed");
        return;
    }
    for page in pages() {
        let out = Command::new("groff")
            .args(["-mandoc", "-ww", "-z", "-Tutf8"])
            .arg(&page)
            .output()
            .expect("run groff");
        let msgs = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && msgs.trim().is_empty(),
            "groff -mandoc -ww complains about {}:\n{msgs}",
            page.display()
        );
    }
}
