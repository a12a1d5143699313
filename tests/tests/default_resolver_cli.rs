//! The built-in `Choria JWT Resolver` through the real binary, with no plugins.
mod common;
use common::*;
use serde_json::json;

fn targets_with_jwt(dir: &TempDir, token: &str, extra: &[&str]) -> Run {
    let file = dir.write("provisioning.jwt", token);
    let none = path_str(&dir.path().join("no-plugins"));
    let jwt = format!("plugin.provtarget.jwt_file={}", path_str(&file));
    let mut args = vec!["targets", "--plugin-dir", &none, "--set", &jwt];
    args.extend_from_slice(extra);
    provtarget(&args)
}

#[test]
fn a_good_jwt_supplies_the_broker_urls() {
    let dir = TempDir::new("jwt-good");
    let token =
        jwt(&json!({"cht": "tok", "chu": "prov1.example.net:4222, tls://prov2.example.net:4223"}));
    let run = targets_with_jwt(&dir, &token, &[]);
    run.ok();
    assert_eq!(
        run.stdout,
        "Attempting provisioner resolution using: Choria JWT Resolver\nProvisioning using 2 broker(s):\n   nats://prov1.example.net:4222\n   tls://prov2.example.net:4223\n"
    );
}

#[test]
fn a_bad_jwt_is_logged_not_fatal() {
    let dir = TempDir::new("jwt-bad");
    let run = targets_with_jwt(&dir, "this is not a jwt", &[]);
    run.failed(1);
    assert!(run.stderr.contains("provisioning.jwt"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "Neither provisioning broker url or provisioning SRV domain is set, cannot continue"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("provisioning target plugin Choria JWT Resolver returned no servers"),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_claims_use_choria_texts() {
    for (claims, text) in [
        (json!({"chu": "a:1"}), "no auth token"),
        (json!({"cht": "t"}), "no srv domain or urls"),
        (
            json!({"cht": "t", "chu": "a:1", "chsrv": "example.net"}),
            "both srv domain and URLs supplied",
        ),
    ] {
        let dir = TempDir::new("jwt-claims");
        let run = targets_with_jwt(&dir, &jwt(&claims), &[]);
        run.failed(1);
        assert!(run.stderr.contains(text), "{claims}: {}", run.stderr);
    }
}

#[test]
fn broker_urls_from_the_environment_without_any_jwt() {
    let dir = TempDir::new("env-urls");
    let none = path_str(&dir.path().join("no-plugins"));
    let run = provtarget_env(
        &[
            "targets",
            "--json",
            "--plugin-dir",
            &none,
            "--set",
            "plugin.provtarget.jwt_file=",
        ],
        &[(
            "PROVTARGET_BROKER_URLS",
            "env1.example:4222,env2.example:4222",
        )],
    );
    run.ok();
    assert_eq!(
        run.json()["servers"],
        json!(["nats://env1.example:4222", "nats://env2.example:4222"])
    );
}
