//! Passwords never appear in what the store prints.

use store::redact;

#[test]
fn redact_masks_passwords_in_urls_and_connection_strings() {
    let cases = [
        ("postgresql://btopt:s3cret@db.example:5432/studies", "postgresql://btopt:***@db.example:5432/studies"),
        (
            "postgresql://btopt@db:5432/s?password=s3cret&sslmode=require",
            "postgresql://btopt@db:5432/s?password=***&sslmode=require",
        ),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ("host=db user=u password=s3cret dbname=x", "host=db user=u password=*** dbname=x"),
        ("host=db password='a b\\'c' dbname=x", "host=db password=*** dbname=x"),
        ("postgresql://btopt@127.0.0.1:5432/studies", "postgresql://btopt@127.0.0.1:5432/studies"),
        ("study.sqlite", "study.sqlite"),
    ];
    for (input, expect) in cases {
        assert_eq!(redact(input), expect, "{input}");
    }
}

#[test]
fn a_failed_connection_names_the_server_but_not_the_password() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://btopt:s3cret-pw@127.0.0.1:{port}/studies?connect_timeout=1");
    let target = store::PgTarget::parse(&url).unwrap();
    let Err(e) = target.connect() else { panic!("nothing listens on port {port}") };
    let e = e.to_string();
    assert!(!e.contains("s3cret-pw"), "{e}");
    assert!(e.contains(&format!("btopt:***@127.0.0.1:{port}")), "{e}");
    let bad = store::Location::parse("mysql://root:s3cret-pw@h/db").unwrap_err().to_string();
    assert!(!bad.contains("s3cret-pw") && bad.contains("mysql://root:***@h/db"), "{bad}");
}

#[test]
fn store_locations_parse_as_documented() {
    use store::Location;
    assert!(matches!(Location::parse("a/b.sqlite").unwrap(), Location::Sqlite(p) if p.ends_with("a/b.sqlite")));
    assert!(matches!(Location::parse("sqlite:a/b.sqlite").unwrap(), Location::Sqlite(p) if p.ends_with("a/b.sqlite")));
    let pg = Location::parse("postgresql://u@127.0.0.1:5433/db").unwrap();
    assert!(matches!(&pg, Location::Postgres(t) if t.dbname() == "db"), "{pg:?}");
    assert!(Location::parse("").is_err());
    let e = store::open("x.sqlite", Some("name"), None).unwrap_err().to_string();
    assert!(e.contains("--study needs a postgresql:// store"), "{e}");
}
