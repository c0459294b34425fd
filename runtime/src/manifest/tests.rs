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

    let e = &errors("[grants.mqtt.events]\nbackend = \"k\"\n")[0];
    assert_eq!(e.path, "grants.mqtt");
    assert!(e.message.contains("unknown field `mqtt`"), "{e}");

    let e = &errors("[grants.amqp.bus]\nbackend = \"r\"\nconsumes = [\"q\"]\n")[0];
    assert_eq!(e.path, "grants.amqp.bus.consumes");

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

#[test]
fn config_must_satisfy_the_config_schema_and_every_violation_is_listed() {
    let schema = r#"
[config-schema]
type = "object"
required = ["currency", "region"]
additionalProperties = false
[config-schema.properties.currency]
type = "string"
enum = ["EUR", "USD"]
[config-schema.properties.retries]
type = "integer"
minimum = 0
"#;
    let ok = format!(
        "[module]\nname = \"m\"\nversion = \"1.0.0\"\n[config]\ncurrency = \"EUR\"\nregion = \"x\"\n{schema}[config-schema.properties.region]\ntype = \"string\"\n"
    );
    Manifest::parse(&ok).unwrap();
    let bad = format!(
        "[module]\nname = \"m\"\nversion = \"1.0.0\"\n[config]\ncurrency = \"GBP\"\nretries = -1\nextra = true\n{schema}"
    );
    let errs = Manifest::parse(&bad).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("config.currency"), "{all}");
    assert!(all.contains("config.retries"), "{all}");
    assert!(all.contains("region"), "{all}");
    assert!(all.contains("extra"), "{all}");
}

#[test]
fn config_schemas_cannot_make_the_host_fetch_anything() {
    let m = "[module]\nname = \"m\"\nversion = \"1.0.0\"\n[config]\na = \"b\"\n[config-schema]\n\"$ref\" = \"http://169.254.169.254/latest/meta-data\"\n";
    let errs = Manifest::parse(m).unwrap_err();
    assert_eq!(errs[0].path, "config-schema", "{errs:?}");
    let m = "[module]\nname = \"m\"\nversion = \"1.0.0\"\n[config-schema]\n\"$ref\" = \"file:///etc/passwd\"\n";
    assert_eq!(Manifest::parse(m).unwrap_err()[0].path, "config-schema");
}

#[test]
fn subscriptions_consume_only_what_a_grant_on_their_backend_allows() {
    let ok = "[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"orders.*\"]\nproduce = [\"orders.dlq\"]\n\
              [[subscribe]]\nsource = \"kafka:k\"\ntopic = \"orders.created\"\ndead-letter = \"orders.dlq\"\n";
    Manifest::parse(&format!("{MINIMAL}{ok}")).unwrap();
    let paths =
        |extra: &str| -> Vec<String> { errors(extra).into_iter().map(|e| e.to_string()).collect() };
    // Another backend's grant does not count.
    let p = paths(
        "[grants.kafka.ev]\nbackend = \"other\"\nconsume = [\"t\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"t\"\n",
    );
    assert!(
        p[0].starts_with("subscribe[0].topic: no [grants.kafka.<name>] on backend \"k\""),
        "{p:?}"
    );
    // A name librdkafka would read as a regex over every topic, even where
    // a (careless) glob would let it through.
    let p = paths(
        "[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"^orders.+\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"^orders.+\"\n",
    );
    assert!(
        p[0].starts_with("subscribe[0].topic") && p[0].contains("is not a Kafka topic name"),
        "{p:?}"
    );
    // Dead letters only where the module may produce / publish.
    let p = paths(
        "[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"t\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"t\"\ndead-letter = \"x\"\n",
    );
    assert!(p[0].starts_with("subscribe[0].dead-letter"), "{p:?}");
    let p = paths(
        "[grants.amqp.bus]\nbackend = \"r\"\nconsume = [\"q\"]\npublish = [\"dlx/other\"]\n[[subscribe]]\nsource = \"amqp:r\"\ntopic = \"q\"\ndead-letter = \"dlx\"\n",
    );
    assert!(p[0].contains("\"dlx/q\" in publish"), "{p:?}");
    // Redis channels need exactly one kv prefix on the backend.
    let p = paths("[[subscribe]]\nsource = \"redis:cache\"\ntopic = \"c\"\n");
    assert!(p[0].contains("confined to a kv prefix"), "{p:?}");
    let p = paths(
        "[grants.kv.a]\nbackend = \"cache\"\nprefix = \"a:\"\n[grants.kv.b]\nbackend = \"cache\"\nprefix = \"b:\"\n[[subscribe]]\nsource = \"redis:cache\"\ntopic = \"c\"\n",
    );
    assert!(p[0].contains("ambiguous"), "{p:?}");
    // Unknown kinds and missing ids.
    for source in ["nats:x", "kafka:", "kafka"] {
        let p = paths(&format!(
            "[[subscribe]]\nsource = \"{source}\"\ntopic = \"t\"\n"
        ));
        assert!(p[0].starts_with("subscribe[0].source"), "{source}: {p:?}");
    }
    // Grant globs are checked.
    let p = paths("[grants.amqp.bus]\nbackend = \"r\"\ndeclare = [\"\"]\n");
    assert!(p[0].starts_with("grants.amqp.bus: declare"), "{p:?}");
}

#[test]
fn cron_schedules_that_never_fire_are_refused() {
    for never in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 11 *"] {
        let e = &errors(&format!("[[cron]]\nschedule = \"{never}\"\n"))[0];
        assert_eq!(e.path, "cron[0].schedule", "{never}");
        assert!(e.message.contains("no occurrence"), "{never}: {e}");
    }
    // Rare but real: the 29th of February.
    Manifest::parse(&format!("{MINIMAL}[[cron]]\nschedule = \"0 0 29 2 *\"\n")).unwrap();
}

#[test]
fn the_grant_summary_names_every_capability_granted() {
    let m = Manifest::parse(
        "[module]\nname = \"all\"\nversion = \"1.0.0\"\n\
         [grants.fs]\n\"/data\" = { host = \"all/data\" }\n\
         [grants.net]\nallow = [\"api.example.com:443\"]\n\
         [grants.sql.main]\nbackend = \"db\"\n\
         [grants.kv.cache]\nbackend = \"redis\"\nprefix = \"all:\"\n\
         [grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"orders\"]\n\
         [grants.amqp.jobs]\nbackend = \"mq\"\npublish = [\"jobs/*\"]\n\
         [grants.events]\npublish = [\"all.done\"]\n",
    )
    .unwrap();
    let summary = m.grants.summary();
    for (kind, granted) in [
        ("fs", "/data"),
        ("net", "api.example.com:443"),
        ("sql", "main"),
        ("kv", "cache"),
        ("kafka", "ev"),
        ("amqp", "jobs"),
        ("events", "all.done"),
    ] {
        assert_eq!(summary[kind][0], granted, "{kind}: {summary}");
    }
}
