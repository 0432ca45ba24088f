//! Each mode, each factor-text form and each preauth result, end to end over HTTPS.

use crate::fake_duo::{phone_device, Answer, PreauthResult, Sig, User};
use crate::util::Setup;
use base64::Engine as _;

/// These tests log the same user in repeatedly to compare factors; the cache would answer.
const NO_CACHE: &str = "[cache]\nttl = 0";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn push_approved_allows_with_one_connection_and_two_signed_requests() {
    let s = Setup::new();
    let run = s.verify("alice", "", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs = s.duo.requests();
    assert_eq!(reqs.len(), 2, "preauth then auth");
    assert_eq!(reqs[0].path, "/auth/v2/preauth");
    assert_eq!(reqs[1].path, "/auth/v2/auth");
    assert!(reqs.iter().all(|r| r.signature_ok));
    assert_eq!(
        s.duo.connections(),
        1,
        "one TLS connection for the exchange"
    );
    let auth = &reqs[1].params;
    assert_eq!(auth["factor"], "push");
    assert_eq!(auth["device"], "DPFZRS9FB0D46QFTM891");
    assert_eq!(auth["ipaddr"], "203.0.113.7");
    assert_eq!(reqs[0].params["ipaddr"], "203.0.113.7");
    assert!(auth["pushinfo"].contains("Client%20IP=203.0.113.7"));
    assert!(auth["pushinfo"].contains("Common%20Name=alice-laptop"));
    let line = run.decision();
    assert!(line.contains("user=alice"), "{line}");
    assert!(line.contains("cn=alice-laptop"), "{line}");
    assert!(line.contains("ip=203.0.113.7"), "{line}");
    assert!(line.contains("factor=push"), "{line}");
    assert!(line.contains("result=allow"), "{line}");
    assert!(line.contains("via=duo"), "{line}");
    assert!(line.contains("id="), "{line}");
}

#[test]
fn v2_hmac_sha1_signatures_are_accepted_by_the_server() {
    let s = Setup::with(Sig::V2, "");
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs = s.duo.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.signature_ok));
    assert_eq!(
        reqs[1].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[test]
fn v5_sends_json_bodies() {
    let s = Setup::new();
    assert_eq!(s.verify("alice", "push", &[]).code, 0);
    assert_eq!(
        s.duo.calls("auth")[0].headers["content-type"],
        "application/json"
    );
}

#[test]
fn push_denied_fraud_timeout_and_lockout_deny_with_reasons() {
    let s = Setup::new();
    let reason_file = s.path("reason");
    for (answer, log_reason, client) in [
        (Answer::Deny, "push denied", "Duo push denied"),
        (Answer::Fraud, "reported as fraud", "Duo push denied"),
        (Answer::Timeout, "push timed out", "Duo push timed out"),
        (Answer::LockedOut, "locked out", "Duo account locked out"),
    ] {
        s.duo.set_user(
            "alice",
            User {
                push: answer,
                ..User::default()
            },
        );
        std::fs::write(&reason_file, "").unwrap();
        let run = s.verify(
            "alice",
            "push",
            &[("auth_failed_reason_file", reason_file.to_str().unwrap())],
        );
        assert_eq!(run.code, 1, "{answer:?}");
        assert!(run.decision().contains("result=deny"));
        assert!(run.decision().contains(log_reason), "{}", run.decision());
        let sent = std::fs::read_to_string(&reason_file).unwrap();
        assert_eq!(sent, client);
    }
}

#[test]
fn passcode_digits_are_sent_as_passcode_factor() {
    let s = Setup::new();
    let run = s.verify("alice", "123456", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["factor"], "passcode");
    assert_eq!(auth["passcode"], "123456");
    assert!(!auth.contains_key("device"));
    assert!(run.decision().contains("factor=passcode"));
}

#[test]
fn wrong_passcode_denies() {
    let s = Setup::new();
    let run = s.verify("alice", "999999", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.decision().contains("passcode rejected"),
        "{}",
        run.decision()
    );
}

#[test]
fn text_after_last_comma_is_the_factor() {
    let s = Setup::new();
    assert_eq!(s.verify("alice", "my,ldap,password,123456", &[]).code, 0);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["passcode"], "123456");
}

#[test]
fn static_challenge_response_is_the_factor() {
    let s = Setup::with(Sig::V5, NO_CACHE);
    let pw = format!("SCRV1:{}:{}", b64("ldap-password"), b64("123456"));
    assert_eq!(s.verify("alice", &pw, &[]).code, 0);
    assert_eq!(s.duo.calls("auth")[0].params["passcode"], "123456");
    s.duo.clear();
    let pw = format!("SCRV1:{}:{}", b64("x"), b64("phone"));
    assert_eq!(s.verify("alice", &pw, &[]).code, 0);
    assert_eq!(s.duo.calls("auth")[0].params["factor"], "phone");
}

#[test]
fn malformed_static_challenge_is_denied_without_asking_duo() {
    let s = Setup::new();
    let run = s.verify("alice", "SCRV1:abc:!!notbase64", &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("SCRV1"), "{}", run.decision());
    assert!(s.duo.requests().is_empty());
}

#[test]
fn device_number_picks_that_device() {
    let s = Setup::with(Sig::V5, NO_CACHE);
    s.duo.set_user(
        "alice",
        User {
            devices: vec![
                phone_device("DPFIRST0000000000001", "Android", true),
                phone_device("DPSECOND000000000002", "iPad", true),
            ],
            ..User::default()
        },
    );
    assert_eq!(s.verify("alice", "push2", &[]).code, 0);
    assert_eq!(
        s.duo.calls("auth")[0].params["device"],
        "DPSECOND000000000002"
    );
    s.duo.clear();
    assert_eq!(s.verify("alice", "PHONE1", &[]).code, 0);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["factor"], "phone");
    assert_eq!(auth["device"], "DPFIRST0000000000001");
    s.duo.clear();
    let run = s.verify("alice", "push3", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.decision().contains("no device number 3"),
        "{}",
        run.decision()
    );
    assert!(s.duo.calls("auth").is_empty());
}

#[test]
fn sms_ends_in_deny_saying_passcodes_were_sent() {
    let s = Setup::new();
    let run = s.verify("alice", "sms", &[]);
    assert_eq!(run.code, 1);
    assert_eq!(s.duo.calls("auth")[0].params["factor"], "sms");
    assert!(
        run.decision().contains("SMS passcodes sent"),
        "{}",
        run.decision()
    );
}

#[test]
fn mode_push_uses_push_and_needs_a_push_device() {
    let s = Setup::with(Sig::V5, &format!("mode = \"push\"\n{NO_CACHE}"));
    assert_eq!(s.verify("alice", "whatever", &[]).code, 0);
    assert_eq!(s.duo.calls("auth")[0].params["factor"], "push");
    s.duo.clear();
    s.duo.set_user(
        "alice",
        User {
            devices: vec![phone_device("DPLANDLINE0000000001", "desk", false)],
            ..User::default()
        },
    );
    let run = s.verify("alice", "", &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("no device that can do push"));
    assert!(s.duo.calls("auth").is_empty());
}

#[test]
fn mode_phone_calls_back() {
    let s = Setup::with(Sig::V5, "mode = \"phone\"");
    assert_eq!(s.verify("alice", "", &[]).code, 0);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["factor"], "phone");
    assert!(!auth.contains_key("pushinfo"), "pushinfo is for pushes");
}

#[test]
fn mode_passcode_without_passcode_denies_without_asking_duo() {
    let s = Setup::with(Sig::V5, "mode = \"passcode\"");
    let reason_file = s.path("reason");
    std::fs::write(&reason_file, "").unwrap();
    let run = s.verify(
        "alice",
        "hunter2",
        &[("auth_failed_reason_file", reason_file.to_str().unwrap())],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.decision().contains("passcode required"),
        "{}",
        run.decision()
    );
    assert!(s.duo.requests().is_empty());
    assert!(std::fs::read_to_string(&reason_file)
        .unwrap()
        .contains("passcode required"));
    assert_eq!(s.verify("alice", "123456", &[]).code, 0);
}

#[test]
fn push_phone_falls_back_to_phone_without_push_device() {
    let s = Setup::new();
    s.duo.set_user(
        "alice",
        User {
            devices: vec![phone_device("DPLANDLINE0000000001", "desk", false)],
            ..User::default()
        },
    );
    assert_eq!(s.verify("alice", "", &[]).code, 0);
    assert_eq!(s.duo.calls("auth")[0].params["factor"], "phone");
}

#[test]
fn preauth_allow_is_a_logged_bypass_without_auth() {
    let s = Setup::new();
    s.duo.set_user(
        "alice",
        User {
            preauth: PreauthResult::Allow,
            ..User::default()
        },
    );
    let run = s.verify("alice", "", &[]);
    assert_eq!(run.code, 0);
    assert!(run.decision().contains("via=bypass"), "{}", run.decision());
    assert!(s.duo.calls("auth").is_empty());
}

#[test]
fn preauth_deny_denies() {
    let s = Setup::new();
    s.duo.set_user(
        "alice",
        User {
            preauth: PreauthResult::Deny,
            ..User::default()
        },
    );
    let run = s.verify("alice", "", &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("preauth denies"));
    assert!(s.duo.calls("auth").is_empty());
}

#[test]
fn enroll_denies_with_the_enroll_url_in_log_and_reason() {
    let s = Setup::new();
    let url = "https://api-test.duosecurity.com/portal?code=abc123";
    s.duo.set_user(
        "alice",
        User {
            preauth: PreauthResult::Enroll(url.into()),
            ..User::default()
        },
    );
    let reason_file = s.path("reason");
    std::fs::write(&reason_file, "").unwrap();
    let run = s.verify(
        "alice",
        "",
        &[("auth_failed_reason_file", reason_file.to_str().unwrap())],
    );
    assert_eq!(run.code, 1);
    assert!(run.decision().contains(url), "{}", run.decision());
    assert_eq!(
        std::fs::read_to_string(&reason_file).unwrap(),
        format!("Duo enrollment required: {url}")
    );
}

#[test]
fn username_from_common_name_and_simple_normalization() {
    let s = Setup::with(
        Sig::V5,
        "username_from = \"common_name\"\nusername_normalization = \"simple\"",
    );
    s.duo.set_user("bob", User::default());
    let run = s.verify("ignored", "", &[("common_name", "bob@example.com")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(s.duo.calls("preauth")[0].params["username"], "bob");

    let s = Setup::with(Sig::V5, "username_normalization = \"simple\"");
    assert_eq!(s.verify("CORP\\alice", "", &[]).code, 0);
    assert_eq!(s.duo.calls("preauth")[0].params["username"], "alice");
}

#[test]
fn common_name_source_without_certificate_denies() {
    let s = Setup::with(Sig::V5, "username_from = \"common_name\"");
    let mut cmd = crate::util::openvpn_command();
    let cred = s.path("up.txt");
    crate::util::write_private(&cred, "alice\npush\n");
    cmd.arg("--config").arg(&s.config).arg(&cred);
    let run = crate::util::run(cmd);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("common_name"), "{}", run.decision());
    assert!(s.duo.requests().is_empty());
}

#[test]
fn push_type_and_server_name_reach_the_push() {
    let s = Setup::with(
        Sig::V5,
        "push_type = \"VPN login\"\nserver_name = \"vpn1.example.com\"",
    );
    assert_eq!(s.verify("alice", "push", &[]).code, 0);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["type"], "VPN login");
    assert!(auth["pushinfo"].starts_with("Server=vpn1.example.com"));
    let s = Setup::with(Sig::V5, "pushinfo = false");
    assert_eq!(s.verify("alice", "push", &[]).code, 0);
    assert!(!s.duo.calls("auth")[0].params.contains_key("pushinfo"));
}

#[test]
fn via_env_reads_username_and_password_variables() {
    let s = Setup::new();
    let mut cmd = crate::util::openvpn_command();
    cmd.arg("--config")
        .arg(&s.config)
        .env("username", "alice")
        .env("password", "x,123456")
        .env("untrusted_ip6", "2001:db8::7");
    let run = crate::util::run(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let auth = &s.duo.calls("auth")[0].params;
    assert_eq!(auth["passcode"], "123456");
    assert_eq!(auth["ipaddr"], "2001:db8::7");
}
