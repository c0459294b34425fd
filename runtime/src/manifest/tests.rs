use super::*;

const MINIMAL: &str = "[module]\nname = \"orders\"\nversion = \"1.4.0\"\n";

fn errors(extra: &str) -> Vec<ManifestError> {
    Manifest::parse(&format!("{MINIMAL}{extra}")).unwrap_err()
}

#[test]
fn minimal_manifest_grants_nothing() {
    let m = Manifest::parse(MINIMAL).unwrap();
    assert!(m.grants.fs.is_empty());
    assert!(m.grants.net.is_none());
    assert!(m.config.is_empty());
}

#[test]
fn full_manifest_parses() {
    let m = Manifest::parse(&format!(
        "{MINIMAL}[limits]\nmemory = \"64 MiB\"\ntimeout = \"2s\"\nfuel = 50000000\nmax-instances = 32\nrate = \"100/s\"\n\
         [http]\nroute = \"/orders\"\n[[cron]]\nschedule = \"*/5 * * * *\"\n\
         [grants.fs]\n\"/data\" = {{ host = \"data\", access = \"read-write\" }}\n\
         [grants.net]\nallow = [\"api.example.com:443\"]\n[config]\ncurrency = \"EUR\"\nretries = 3\n"
    ))
    .unwrap();
    assert_eq!(m.limits.memory, Some(ByteSize(64 << 20)));
    assert_eq!(m.grants.fs["/data"].access, warden_fs::Access::ReadWrite);
    assert_eq!(m.config["retries"].as_config_string(), "3");
}

#[test]
fn unknown_keys_name_their_path() {
    let e = &errors("[limits]\nmemroy = \"1 MiB\"\n")[0];
    assert_eq!(e.path, "limits.memroy");
    assert!(e.message.contains("unknown field `memroy`"), "{e}");

    let e = &errors("[grants.fs]\n\"/d\" = { host = \"x\", acess = \"read-only\" }\n")[0];
    assert!(e.path.starts_with("grants.fs"), "{e}");

    let e = &errors("[grants.kafka.events]\nbackend = \"k\"\n")[0];
    assert_eq!(e.path, "grants.kafka");
    assert!(e.message.contains("unknown field `kafka`"), "{e}");

    let e = &errors("[grants.sql.main]\nbackend = \"db\"\nacess = \"read-write\"\n")[0];
    assert_eq!(e.path, "grants.sql.main.acess");

    let e = &errors("[surprise]\n")[0];
    assert!(e.message.contains("unknown field `surprise`"), "{e}");
}

#[test]
fn bad_values_name_their_path() {
    assert_eq!(
        errors("[limits]\nmemory = \"lots\"\n")[0].path,
        "limits.memory"
    );
    assert_eq!(
        errors("[limits]\ntimeout = \"soon\"\n")[0].path,
        "limits.timeout"
    );
    assert_eq!(errors("[limits]\nrate = \"fast\"\n")[0].path, "limits.rate");
    assert_eq!(
        errors("[grants.fs]\n\"/d\" = { host = \"x\", access = \"all\" }\n")[0].path,
        "grants.fs./d.access"
    );
    assert_eq!(
        errors("[grants.net]\nallow = [\"*.example.com:443\"]\n")[0].path,
        "grants.net.allow"
    );
}

#[test]
fn all_semantic_problems_are_listed() {
    let errs =
        Manifest::parse("[module]\nname = \"Bad Name\"\nversion = \"one\"\n[limits]\nfuel = 0\n")
            .unwrap_err();
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["module.name", "module.version", "limits.fuel"]);
}

#[test]
fn syntax_errors_are_reported() {
    let e = &Manifest::parse("[module\n").unwrap_err()[0];
    assert!(e.message.starts_with("TOML syntax"), "{e}");
    let e = &Manifest::parse("").unwrap_err()[0];
    assert!(e.message.contains("missing field `module`"), "{e}");
}
