//! TLS to the server: `sslmode=require` encrypts, `verify-full` with `sslrootcert` also
//! verifies the certificate and the host name, and a wrong root certificate is refused at once.

fn uses_tls(url: &str) -> bool {
    let mut c = store::PgTarget::parse(url).unwrap().connect().unwrap_or_else(|e| panic!("{url}: {e}"));
    c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0)
}

#[test]
fn require_and_verify_full_connect_over_tls_and_a_wrong_root_certificate_is_refused() {
    let Some((cluster, ca)) = store::testing::Cluster::start_tls() else {
        store::testing::skip();
        return;
    };
    let url = cluster.url();
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    assert!(uses_tls(&format!("{url}?sslmode=require")));
    assert!(uses_tls(&format!("{by_name}?sslmode=verify-full&sslrootcert={}", ca.display())));
    assert!(uses_tls(&format!("{url}?sslmode=verify-ca&sslrootcert={}", ca.display())));
    assert!(!uses_tls(&format!("{url}?sslmode=disable")));

    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other"])
        .args(["-keyout", "k.pem", "-out", "ca.crt"])
        .current_dir(other.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        by_name.replacen("postgres@", "postgres:pw-secret@", 1),
        other.path().join("ca.crt").display()
    );
    let Err(e) = store::PgStore::connect(&store::PgTarget::parse(&wrong).unwrap(), None, None) else {
        panic!("a certificate from another CA was accepted")
    };
    let e = e.to_string();
    assert!(e.contains("certificate verify failed"), "{e}");
    assert!(!e.contains("pw-secret"), "{e}");
    // The connector is built when the server accepts TLS, once per target.
    let target = store::PgTarget::parse(&format!("{url}?sslmode=require")).unwrap();
    assert!(!target.has_tls_connector());
    drop(store::PgStore::connect(&target, None, None).unwrap());
    assert!(target.has_tls_connector());
    // A root certificate that does not exist: one line naming it, and no retries.
    let missing = other.path().join("missing.crt");
    let url_missing = format!("{by_name}?sslmode=verify-full&sslrootcert={}", missing.display());
    let Err(e) = store::PgStore::connect(&store::PgTarget::parse(&url_missing).unwrap(), None, None) else {
        panic!("a missing root certificate was accepted")
    };
    let e = e.to_string();
    assert!(e.contains("root certificate") && e.contains("missing.crt") && !e.contains('\n'), "{e}");
    let bad = store::PgTarget::parse(&format!("{url}?sslmode=sometimes")).unwrap_err().to_string();
    assert!(bad.contains("sslmode sometimes"), "{bad}");
}

#[test]
fn prefer_against_a_server_without_tls_connects_in_the_clear_without_building_a_tls_connector() {
    let Some(server) = store::testing::server() else { return };
    let target = store::PgTarget::parse(&server.create_database()).unwrap();
    let mut c = target.connect().unwrap();
    let ssl: Option<bool> =
        c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert_eq!(ssl, Some(false));
    assert!(!target.has_tls_connector(), "the CA bundle is loaded only for a server that speaks TLS");
}
