//! Authentication and RBAC, compared with etcd 3.4: user and role management with its errors,
//! `auth enable`/`disable` flows, the permission matrix (KV, txn, watch, lease, cluster and
//! maintenance RPCs for users with read, write and readwrite on a key, a range and a prefix),
//! permission changes taking effect, simple tokens (format, TTL, invalidation) and JWT tokens
//! (claims, expiry, foreign keys, the auth revision) driven over gRPC.
//! The facts behind the expectations are in the etcd oracle notes for issue 6.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use oxcd_process_tests::compat_tests;
use oxcd_process_tests::grpc;
use oxcd_process_tests::member::{Kind, Member, MemberOpts};
use oxcd_process_tests::scenario::{step, Scenario, Step};
use serde_json::Value;

/// etcd's minimum bcrypt cost: every step with `--user` authenticates.
const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

fn fast() -> MemberOpts {
    MemberOpts::args(FAST_BCRYPT)
}

/// `cmd` run as `user` (password = user name; global flags go last so that `lease grant`
/// stays first and its lease is recognised).
fn as_user(user: &str, cmd: &str) -> Step {
    step(&format!("{cmd} --user {user}:{user}"))
}

/// `cmd` as `user` with `stdin`.
fn as_user_stdin(user: &str, cmd: &str, stdin: &str) -> Step {
    as_user(user, cmd).stdin(stdin)
}

/// The users of the permission matrix: `ro`, `wo`, `rw` have read, write and readwrite on
/// key `k`, range `[r1, r5)` and prefix `p/`; `none` has a role without permissions; `root`.
const USERS: [&str; 5] = ["ro", "wo", "rw", "none", "root"];

/// Users, roles, some keys, then `auth enable`.
fn rbac_setup() -> Vec<Step> {
    let mut s = vec![
        step("user add root:root"),
        step("role add root"),
        step("user grant-role root root"),
    ];
    for (user, role, perm) in [
        ("ro", "rro", "read"),
        ("wo", "rwo", "write"),
        ("rw", "rrw", "readwrite"),
    ] {
        s.push(step(&format!("user add {user}:{user}")));
        s.push(step(&format!("role add {role}")));
        s.push(step(&format!("role grant-permission {role} {perm} k")));
        s.push(step(&format!("role grant-permission {role} {perm} r1 r5")));
        s.push(step(&format!(
            "role grant-permission {role} {perm} p/ --prefix"
        )));
        s.push(step(&format!("user grant-role {user} {role}")));
    }
    s.extend([
        step("user add none:none"),
        step("role add empty"),
        step("user grant-role none empty"),
        step("put k v0"),
        step("put r2 v"),
        step("put p/a v"),
        step("put z v"),
        step("auth enable"),
    ]);
    s
}

fn with_setup(steps: Vec<Step>) -> Scenario {
    let mut all = rbac_setup();
    all.extend(steps);
    Scenario {
        opts: fast(),
        steps: all,
    }
}

/// User and role management with auth off: outputs, formats and errors.
fn management() -> Scenario {
    let mut steps = vec![
        step("user add"),
        step("user add '' --new-user-password=x"),
        step("user add alice --new-user-password=pa"),
        step("user add alice --new-user-password=pa"),
        step("user add bob:pb"),
        step("user add carl --no-password"),
        step("user add e:f:g"),
        step("user add u2 --interactive=false").stdin("pw2\n"),
        step("user get alice"),
        step("user get nobody"),
        step("user list"),
        step("user passwd alice --interactive=false").stdin("newpa\n"),
        step("user passwd nobody --interactive=false").stdin("x\n"),
        step("role add"),
        step("role add r1"),
        step("role add r1"),
        step("role add ''"),
        step("role add r2"),
        step("role get r1"),
        step("role get nor"),
        step("role list"),
        step("user grant-role alice r1"),
        step("user grant-role alice r1"),
        step("user grant-role alice r2"),
        step("user grant-role alice nor"),
        step("user grant-role nobody r1"),
        step("user revoke-role alice nor"),
        step("user revoke-role bob r1"),
        step("user revoke-role nobody r1"),
        step("user get alice"),
        step("user get alice --detail"),
        step("user get bob"),
        step("role grant-permission"),
        step("role grant-permission r1 read"),
        step("role grant-permission r1 read k1"),
        step("role grant-permission r1 read k1"),
        step("role grant-permission r1 write k2 k3"),
        step("role grant-permission r1 readwrite p/ --prefix"),
        step("role grant-permission r1 readwrite f --from-key"),
        step("role grant-permission r1 readwrite f x --from-key"),
        step("role grant-permission r1 readwrite f x --prefix"),
        step("role grant-permission r1 bogus k"),
        step("role grant-permission nor read k"),
        step("role grant-permission r1 READ k9"),
        step("role grant-permission r1 read k1 --prefix"),
        step("role grant-permission r1 write k1"),
        step("role grant-permission r2 read ''"),
        step("role grant-permission r2 read '' --prefix"),
    ];
    for f in ["simple", "json", "fields"] {
        steps.push(step(&format!("role get r1 -w {f}")));
        steps.push(step(&format!("user get alice -w {f}")));
        steps.push(step(&format!("user list -w {f}")));
        steps.push(step(&format!("role list -w {f}")));
    }
    steps.extend([
        step("role get r2"),
        step("role get r1 -w table"),
        step("role revoke-permission r1 k1"),
        step("role revoke-permission r1 k1"),
        step("role revoke-permission r1 zz"),
        step("role revoke-permission r1 k2 k3"),
        step("role revoke-permission r1 p/ --prefix"),
        step("role revoke-permission r1 f --from-key"),
        step("role revoke-permission nor k"),
        step("role revoke-permission r1"),
        step("role get r1"),
        step("user revoke-role alice r2"),
        step("role delete nor"),
        step("role delete r1"),
        step("user get alice"),
        step("user delete nobody"),
        step("user delete e"),
        step("user delete"),
        step("role delete"),
        step("user add j1 --new-user-password=x -w json"),
        step("role add j1 -w json"),
        step("user grant-role j1 j1 -w json"),
        step("role grant-permission j1 read q -w json"),
        step("role revoke-permission j1 q -w json"),
        step("user revoke-role j1 j1 -w json"),
        step("user passwd j1 --interactive=false -w json").stdin("y\n"),
        step("user delete j1 -w json"),
        step("role delete j1 -w fields"),
        step("user list"),
        step("role list"),
    ]);
    Scenario {
        opts: fast(),
        steps,
    }
}

/// `auth enable`/`disable`, the root user and role, logins and their failures.
fn enable_disable() -> Scenario {
    let steps = vec![
        step("auth enable"),
        step("auth enable extra"),
        step("user add root:root"),
        // etcdctl creates the missing root role itself and retries.
        step("auth enable"),
        step("role get root"),
        step("get foo"),
        step("put foo bar"),
        step("user list"),
        step("get foo --user root:bad"),
        step("get foo --user nosuch:bad"),
        step("get foo --user root:"),
        step("get foo --user :root"),
        step("get foo --user root --password root"),
        step("get foo --user root:root --password root"),
        as_user("root", "auth enable"),
        as_user("root", "role get root"),
        as_user("root", "user get root"),
        as_user("root", "user add ro:ro"),
        as_user("root", "user add np --no-password"),
        as_user("root", "user list"),
        as_user("ro", "user list"),
        as_user("ro", "role list"),
        as_user("ro", "user add x:x"),
        as_user("ro", "auth enable"),
        as_user("ro", "auth disable"),
        step("get foo --user np:x"),
        as_user("root", "user revoke-role root root"),
        as_user("root", "user delete root"),
        as_user("root", "role delete root"),
        as_user("root", "put foo bar"),
        as_user("root", "auth disable"),
        step("auth disable"),
        step("get foo"),
        // With auth off anyone may manage, root included.
        step("user revoke-role root root"),
        step("role delete root"),
        step("user get root"),
        step("auth enable"),
        as_user("root", "user get root"),
        as_user("root", "auth disable"),
        step("user delete root"),
        step("auth enable"),
    ];
    Scenario {
        opts: fast(),
        steps,
    }
}

/// A non-root user may read itself and its own roles, nothing else.
fn self_access() -> Scenario {
    with_setup(vec![
        as_user("ro", "user get ro"),
        as_user("ro", "user get ro --detail"),
        as_user("ro", "user get rw"),
        as_user("ro", "role get rro"),
        as_user("ro", "role get rrw"),
        as_user("ro", "user list"),
        as_user("ro", "role list"),
        as_user_stdin("ro", "user passwd ro --interactive=false", "ro\n"),
        as_user("ro", "user grant-role ro rrw"),
        as_user("ro", "role grant-permission rro read zz"),
        as_user("none", "user get none --detail"),
        as_user("root", "user get ro -w json"),
        as_user("root", "role get rro -w json"),
        as_user("root", "user list"),
        as_user("root", "role list"),
    ])
}

/// Get, put and delete on keys, ranges and prefixes, for every user.
fn rbac_kv() -> Scenario {
    let mut steps = Vec::new();
    for user in USERS {
        for cmd in [
            "get k",
            "get r1 r5",
            "get r2 r4",
            "get r0 r5",
            "get r1 r6",
            "get p/ --prefix",
            "get p/a",
            "get p --prefix",
            "get k --prefix",
            "get r1 --from-key",
            "get '' --from-key",
            "get p/ --prefix --keys-only",
            "get k --rev 2",
            "get z",
            "put k v1",
            "put r2 v",
            "put r4 v",
            "put p/b v",
            "put p v",
            "put z v",
            "put k v2 --prev-kv",
            "del k",
            "del r1 r5",
            "del r2 r3",
            "del r0 r5",
            "del p/ --prefix",
            "del p/x",
            "del z",
            "del r1 --from-key",
            "del k --prev-kv",
        ] {
            steps.push(as_user(user, cmd));
        }
        for restore in ["put k v0", "put r2 v", "put p/a v", "put z v"] {
            steps.push(as_user("root", restore));
        }
    }
    steps.push(as_user("root", "get '' --from-key"));
    with_setup(steps)
}

/// Txn: every compare needs read, every op of both branches is checked.
fn rbac_txn() -> Scenario {
    let txns = [
        "value(\"k\") = \"v0\"\n\nput k v2\n\n",
        "\nget k\n\n",
        "\n\nget k\n",
        "\nput k v0\n\n",
        "value(\"z\") = \"v\"\n\nput k v0\n\n",
        "value(\"k\") = \"v0\"\n\nget k\n\nput z v\n",
        "value(\"k\") = \"v0\"\n\nget k\ndel k\n\n",
        "\nget p/ --prefix\n\n",
        "\ndel p/ --prefix\n\n",
        "mod(\"r2\") > \"0\"\n\nget r1 r5\n\n",
        "mod(\"r2\") > \"0\"\n\nget r1 r5\n\nget r0 r5\n",
        "value(\"k\") = \"nope\"\n\n\nput z v\n",
        "\n\n\n",
    ];
    let mut steps = Vec::new();
    for user in USERS {
        for t in txns {
            steps.push(as_user_stdin(user, "txn", t));
        }
        steps.push(as_user("root", "put k v0"));
        steps.push(as_user("root", "put p/a v"));
    }
    steps.push(step("txn").stdin("\n\n\n"));
    steps.push(step("txn").stdin("\nget k\n\n"));
    steps.push(as_user("root", "get '' --from-key"));
    with_setup(steps)
}

/// Watches refused at creation end at once (etcdctl exits 5).
fn rbac_watch_denied() -> Scenario {
    with_setup(vec![
        as_user("ro", "watch r0 r5"),
        as_user("ro", "watch z"),
        as_user("ro", "watch p --prefix"),
        as_user("wo", "watch k"),
        as_user("wo", "watch p/ --prefix"),
        as_user("wo", "watch r1 r5"),
        as_user("none", "watch k"),
        step("watch k"),
        step("watch k --user ro:bad"),
        as_user("ro", "watch z --rev 1"),
    ])
}

/// Leases: grant/list/timetolive/keep-alive need nothing; revoke needs write on every
/// attached key; a put with a lease needs write on the lease's keys too.
fn rbac_lease() -> Scenario {
    let mut steps = vec![
        as_user("root", "lease grant 100"),
        as_user("root", "put p/l v --lease={lease1}"),
        as_user("root", "lease grant 100"),
        as_user("root", "put z vz --lease={lease2}"),
    ];
    for user in USERS {
        steps.extend([
            as_user(user, "lease list"),
            as_user(user, "lease timetolive {lease1}"),
            as_user(user, "lease timetolive {lease1} --keys"),
            as_user(user, "lease keep-alive --once {lease1}"),
            as_user(user, "put k vl --lease={lease1}"),
            as_user(user, "put k vl --lease={lease2}"),
            as_user(user, "put z vl --lease={lease1}"),
            as_user(user, "lease revoke {lease2}"),
            as_user(user, "lease revoke abcdef"),
            as_user(user, "put k v --lease=abcdef"),
        ]);
    }
    steps.extend([
        step("lease grant 50"),
        step("lease list"),
        step("lease revoke {lease3}"),
        as_user("none", "lease grant 50"),
        as_user("none", "lease revoke {lease4}"),
        step("lease revoke {lease1}"),
        as_user("ro", "lease revoke {lease1}"),
        as_user("wo", "lease revoke {lease1}"),
        as_user("root", "lease revoke {lease2}"),
        as_user("root", "get '' --from-key --keys-only"),
    ]);
    with_setup(steps)
}

/// Cluster and maintenance RPCs: which need root, which need nothing.
fn rbac_cluster() -> Scenario {
    let mut steps = Vec::new();
    for user in ["ro", "none"] {
        steps.extend([
            as_user(user, "member list"),
            as_user(user, "member remove 1234"),
            as_user(user, "member update 1234 --peer-urls=http://127.0.0.1:1"),
            as_user(user, "member promote 1234"),
            as_user(user, "member add m9 --peer-urls=http://127.0.0.1:1"),
            as_user(user, "endpoint status"),
            as_user(user, "endpoint health"),
            as_user(user, "endpoint hashkv"),
            as_user(user, "alarm list"),
            as_user(user, "alarm disarm"),
            as_user(user, "defrag"),
            as_user(user, "move-leader 1234"),
        ]);
    }
    steps.extend([
        step("member list"),
        step("member remove 1234"),
        step("endpoint status"),
        step("endpoint health"),
        step("endpoint hashkv"),
        step("alarm list"),
        step("defrag"),
        step("compaction 3"),
        as_user("ro", "compaction 4"),
        as_user("root", "member remove 1234"),
        as_user("root", "endpoint hashkv"),
        as_user("root", "defrag"),
        as_user("root", "endpoint health"),
        as_user("root", "compaction 5"),
    ]);
    with_setup(steps)
}

/// Revoked roles, revoked permissions, deleted roles, new passwords and deleted users take
/// effect on the next request.
fn permission_changes() -> Scenario {
    with_setup(vec![
        as_user("ro", "get k"),
        as_user("root", "user revoke-role ro rro"),
        as_user("ro", "get k"),
        as_user("root", "user grant-role ro rro"),
        as_user("ro", "get k"),
        as_user("root", "role revoke-permission rro k"),
        as_user("ro", "get k"),
        as_user("ro", "get p/a"),
        as_user("root", "role grant-permission rro readwrite k"),
        as_user("ro", "put k v9"),
        as_user("root", "role grant-permission rro read k"),
        as_user("ro", "put k v9"),
        as_user("root", "role grant-permission rro read r5 r9"),
        as_user("ro", "get r1 r9"),
        as_user("ro", "get r1 r6"),
        as_user("root", "role delete rro"),
        as_user("ro", "get k"),
        as_user("root", "user get ro"),
        as_user_stdin("root", "user passwd ro --interactive=false", "new\n"),
        as_user("ro", "get k"),
        step("get k --user ro:new"),
        as_user("root", "user delete ro"),
        step("get k --user ro:new"),
        as_user("root", "role add rro"),
        as_user("root", "user add ro:ro"),
        as_user("root", "user get ro"),
    ])
}

compat_tests!(
    management,
    enable_disable,
    self_access,
    rbac_kv,
    rbac_txn,
    rbac_watch_denied,
    rbac_lease,
    rbac_cluster,
    permission_changes,
);

// ---------------------------------------------------------------------------------------------
// Tokens, over gRPC (the token in the `token` metadata, as clientv3 sends it), so that one
// token can be kept across requests and time.

/// The outcome of an Authenticate: `OK` or the failure.
fn login(member: &Member, user: &str, password: &str, token: Option<&str>) -> String {
    grpc::done(grpc::authenticate(
        &member.endpoint(),
        user,
        password,
        token,
    ))
}

/// A token for `user` (password = user name).
fn token(member: &Member, user: &str) -> String {
    grpc::authenticate(&member.endpoint(), user, user, None)
        .unwrap_or_else(|f| panic!("{}: Authenticate {user}: {f}", member.kind))
}

/// Range of key `k` with `token`.
fn get_k(member: &Member, token: Option<&str>) -> String {
    grpc::range(&member.endpoint(), "k", token)
}

/// Runs the setup steps with etcdctl.
fn setup_member(member: &Member) {
    for s in rbac_setup() {
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let out = member.etcdctl(&args);
        assert_eq!(out.code, 0, "{}: {}: {out}", member.kind, s.display());
    }
}

/// What happened, one line per observation, for one server.
type Transcript = Vec<String>;

fn compare_kinds(name: &str, f: fn(Kind) -> Transcript) {
    let want = f(Kind::Etcd);
    let got = f(Kind::Oxcd);
    if std::env::var_os("OXCD_TEST_DUMP").is_some() {
        eprintln!("##### {name}\netcd: {want:#?}\noxcd: {got:#?}");
    }
    let mut report = String::new();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w != g {
            report.push_str(&format!("  {}: etcd `{w}`, oxcd `{g}`\n", i + 1));
        }
    }
    assert!(
        report.is_empty() && want.len() == got.len(),
        "{name}: oxcd differs from etcd:\n{report}etcd: {want:#?}\noxcd: {got:#?}"
    );
}

/// Simple tokens: their format, the sliding TTL, and what invalidates them.
fn simple_tokens(kind: Kind) -> Transcript {
    let m = Member::start_opts(
        kind,
        MemberOpts::args(["--bcrypt-cost", "4", "--auth-token-ttl", "3"]),
    );
    let mut t = Vec::new();
    t.push(format!("disabled: {}", login(&m, "root", "x", None)));
    // A token that does not exist is refused even while auth is off.
    t.push(format!(
        "disabled, bogus token: {}",
        get_k(&m, Some("bogus.1"))
    ));
    setup_member(&m);
    let ro = token(&m, "ro");
    let re = regex::Regex::new(r"^[a-zA-Z]{16}\.[0-9]+$").unwrap();
    t.push(format!("format {}", re.is_match(&ro)));
    t.push(format!("wrong password: {}", login(&m, "ro", "x", None)));
    t.push(format!("unknown user: {}", login(&m, "nobody", "x", None)));
    t.push(format!("empty name: {}", login(&m, "", "", None)));
    t.push(format!("no token: {}", get_k(&m, None)));
    t.push(format!("bogus token: {}", get_k(&m, Some("bogus.1"))));
    t.push(format!("ro: {}", get_k(&m, Some(&ro))));
    // Authenticate with a stale token in the request is refused too.
    t.push(format!(
        "authenticate with a bad token: {}",
        login(&m, "ro", "ro", Some("bogus.1"))
    ));
    // The TTL slides with every use.
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        t.push(format!(
            "used again after 2s ({i}): {}",
            get_k(&m, Some(&ro))
        ));
    }
    std::thread::sleep(Duration::from_secs(6));
    t.push(format!("idle 6s: {}", get_k(&m, Some(&ro))));
    // Role changes keep the token; password changes and deletion end it.
    let root = token(&m, "root");
    let ro = token(&m, "ro");
    let rw = token(&m, "rw");
    let ep = m.endpoint();
    let admin = Some(root.as_str());
    t.push(format!(
        "revoke role: {}",
        grpc::auth(
            &ep,
            admin,
            AuthUserRevokeRoleRequest {
                name: "ro".into(),
                role: "rro".into(),
            }
        )
    ));
    t.push(format!("role revoked: {}", get_k(&m, Some(&ro))));
    t.push(format!(
        "grant role: {}",
        grpc::auth(
            &ep,
            admin,
            AuthUserGrantRoleRequest {
                user: "ro".into(),
                role: "rro".into(),
            }
        )
    ));
    t.push(format!("role granted: {}", get_k(&m, Some(&ro))));
    t.push(format!(
        "change password: {}",
        grpc::auth(
            &ep,
            admin,
            AuthUserChangePasswordRequest {
                name: "ro".into(),
                password: "ro2".into(),
                ..Default::default()
            }
        )
    ));
    t.push(format!("password changed: {}", get_k(&m, Some(&ro))));
    t.push(format!("other user: {}", get_k(&m, Some(&rw))));
    t.push(format!(
        "delete rw: {}",
        grpc::auth(&ep, admin, AuthUserDeleteRequest { name: "rw".into() })
    ));
    t.push(format!("user deleted: {}", get_k(&m, Some(&rw))));
    t.push(format!(
        "auth disable: {}",
        grpc::auth(&ep, admin, AuthDisableRequest {})
    ));
    t.push(format!("disabled, old token: {}", get_k(&m, Some(&root))));
    t.push(format!("disabled, no token: {}", get_k(&m, None)));
    t.push(format!(
        "auth enable: {}",
        grpc::auth(&ep, None, AuthEnableRequest {})
    ));
    t.push(format!("re-enabled, old token: {}", get_k(&m, Some(&root))));
    let root = token(&m, "root");
    t.push(format!("new token: {}", get_k(&m, Some(&root))));
    t
}

#[test]
fn simple_tokens_like_etcd() {
    compare_kinds("simple_tokens", simple_tokens);
}

/// An RSA key pair for JWT made by openssl, shared by every server of this test binary.
fn jwt_keys() -> &'static (PathBuf, PathBuf, PathBuf) {
    static KEYS: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf, PathBuf))> = OnceLock::new();
    &KEYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let p = |n: &str| dir.path().join(n);
            let openssl = |args: &[&str]| {
                let out = std::process::Command::new("openssl")
                    .args(args)
                    .output()
                    .expect("openssl (apt-get install openssl) makes the JWT keys");
                assert!(out.status.success(), "openssl {args:?}: {out:?}");
            };
            for key in ["jwt.key", "other.key"] {
                openssl(&["genrsa", "-out", p(key).to_str().unwrap(), "2048"]);
            }
            openssl(&[
                "rsa",
                "-in",
                p("jwt.key").to_str().unwrap(),
                "-pubout",
                "-out",
                p("jwt.pub").to_str().unwrap(),
            ]);
            let keys = (p("jwt.key"), p("jwt.pub"), p("other.key"));
            (dir, keys)
        })
        .1
}

fn jwt_flag(ttl: &str) -> String {
    let (key, public, _) = jwt_keys();
    format!(
        "jwt,pub-key={},priv-key={},sign-method=RS256,ttl={ttl}",
        public.display(),
        key.display()
    )
}

fn jwt_opts() -> MemberOpts {
    MemberOpts::args(["--bcrypt-cost", "4", "--auth-token", &jwt_flag("5m")])
}

fn b64url(data: &[u8]) -> String {
    use std::fmt::Write as _;
    // base64url without padding, small and local.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let _ = out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (val(*c) << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A JWT with `claims` signed RS256 by `key` (openssl does the signing).
fn sign_jwt(key: &std::path::Path, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.as_bytes())
    );
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("openssl signs");
    format!("{input}.{}", b64url(&out.stdout))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// JWT tokens: the header and claims, expiry, other keys, and the auth revision check.
fn jwt_tokens(kind: Kind) -> Transcript {
    let m = Member::start_opts(
        kind,
        MemberOpts::args(["--bcrypt-cost", "4", "--auth-token", &jwt_flag("4s")]),
    );
    setup_member(&m);
    let mut t = Vec::new();
    let ro = token(&m, "ro");
    let parts: Vec<&str> = ro.split('.').collect();
    t.push(format!("parts {}", parts.len()));
    t.push(format!(
        "header {}",
        String::from_utf8_lossy(&b64url_decode(parts[0]))
    ));
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).expect("JSON claims");
    let keys: Vec<&String> = claims.as_object().unwrap().keys().collect();
    t.push(format!("claim names {keys:?}"));
    t.push(format!("username {}", claims["username"]));
    t.push(format!("revision {}", claims["revision"]));
    let exp = claims["exp"].as_u64().unwrap_or(0);
    t.push(format!(
        "exp - now in 2..=5: {}",
        (2..=5).contains(&(exp - now()))
    ));
    t.push(format!("ro: {}", get_k(&m, Some(&ro))));
    let rev = claims["revision"].as_u64().unwrap_or(0);
    let (key, _, other) = jwt_keys();
    let far = now() + 300;
    // (case, signing key, exp, revision, username)
    let forged = [
        ("other key", other, far, rev, "ro"),
        ("unknown user", key, far, rev, "nobody"),
        ("future revision", key, far, rev + 5, "ro"),
        ("revision 0", key, far, 0, "ro"),
        ("expired", key, 1000, rev, "ro"),
    ];
    let mut cases: Vec<(&str, String)> = forged
        .iter()
        .map(|(what, k, exp, rev, user)| {
            let claims = format!(r#"{{"exp":{exp},"revision":{rev},"username":"{user}"}}"#);
            (*what, sign_jwt(k, &claims))
        })
        .collect();
    cases.push(("garbage", "a.b.c".to_string()));
    for (what, tok) in &cases {
        t.push(format!("{what}: {}", get_k(&m, Some(tok))));
    }
    // Any auth change makes outstanding tokens old.
    let root = token(&m, "root");
    let rw = token(&m, "rw");
    t.push(format!(
        "role add: {}",
        grpc::auth(
            &m.endpoint(),
            Some(&root),
            AuthRoleAddRequest {
                name: "extra".into()
            }
        )
    ));
    t.push(format!(
        "after an auth change, ro: {}",
        get_k(&m, Some(&ro))
    ));
    t.push(format!(
        "after an auth change, rw put: {}",
        grpc::put(&m.endpoint(), "k", "x", Some(&rw))
    ));
    let ro = token(&m, "ro");
    t.push(format!("new token: {}", get_k(&m, Some(&ro))));
    let claims: Value =
        serde_json::from_slice(&b64url_decode(ro.split('.').nth(1).unwrap_or(""))).unwrap();
    t.push(format!("new revision {}", claims["revision"]));
    // No sliding: used at once and again after 2 s, it still dies at exp.
    let start = Instant::now();
    t.push(format!("used: {}", get_k(&m, Some(&ro))));
    std::thread::sleep(Duration::from_secs(2));
    t.push(format!("used after 2s: {}", get_k(&m, Some(&ro))));
    std::thread::sleep(Duration::from_secs(6).saturating_sub(start.elapsed()));
    t.push(format!("after exp: {}", get_k(&m, Some(&ro))));
    t
}

#[test]
fn jwt_tokens_like_etcd() {
    compare_kinds("jwt_tokens", jwt_tokens);
}

/// etcdctl flows with JWT tokens: the same answers as with simple tokens.
fn jwt_flows() -> Scenario {
    let mut steps = rbac_setup();
    steps.extend([
        as_user("ro", "get k"),
        as_user("ro", "put k v"),
        as_user("wo", "put k v1"),
        as_user("rw", "get k"),
        as_user("ro", "watch z"),
        as_user("root", "role add extra"),
        as_user("ro", "get p/ --prefix"),
        as_user("root", "user revoke-role ro rro"),
        as_user("ro", "get k"),
        step("get k --user ro:bad"),
        as_user("root", "auth disable"),
        step("get k"),
    ]);
    Scenario {
        opts: jwt_opts(),
        steps,
    }
}

compat_tests!(jwt_flows);

// ---------------------------------------------------------------------------------------------
// Client-certificate login: with --client-cert-auth the verified certificate's CN is the user
// when the request carries no token.

/// What `which` prints for `args` with the client certificate `cert` (no other TLS flags).
fn with_cert(
    c: &oxcd_process_tests::cluster::Cluster,
    set: &oxcd_process_tests::tls::MtlsSet,
    cert: &oxcd_process_tests::tls::Files,
    args: &[&str],
) -> String {
    use oxcd_process_tests::ctl::{ctl, Ctl};
    use oxcd_process_tests::normalize::drop_go_client_logs;
    let mut all = vec![format!("--cacert={}", set.pki.ca_file().display())];
    all.extend(cert.flags("cert", "key"));
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = ctl(Ctl::Etcdctl, &c.endpoint(0), &all);
    let text = format!(
        "{} -> {} {:?} {:?}",
        args.join(" "),
        out.code,
        out.stdout,
        drop_go_client_logs(&out.stderr)
    );
    let text = text.replace(&c.endpoint(0), "<CLIENT>");
    // Member IDs print as `%x`: an ID with a leading zero nibble has fewer than 16 digits.
    let ids = regex::Regex::new(r"\b[0-9a-f]{12,16}\b|127\.0\.0\.1:[0-9]+").unwrap();
    ids.replace_all(&text, "<ID>").into_owned()
}

fn cn_login(kind: Kind) -> Transcript {
    use oxcd_process_tests::cluster::Cluster;
    use oxcd_process_tests::tls::MtlsSet;
    let dir = tempfile::tempdir().expect("temp dir");
    let set = MtlsSet::new(dir.path());
    let issue = |stem: &str, cn: &str| set.pki.issue(stem, cn, oxcd_pki::Usage::Client);
    let ro = issue("ro", "ro");
    let np = issue("np", "np");
    let stranger = issue("stranger", "nosuchuser");
    let root = set.client.clone();
    let c = Cluster::start_secure(kind, 1, set.secure(&FAST_BCRYPT));
    let mut steps = rbac_setup();
    steps.truncate(steps.len() - 1);
    for s in [
        "user add np --no-password",
        "role add rnp",
        "role grant-permission rnp read k",
        "user grant-role np rnp",
        "auth enable",
    ] {
        steps.push(step(s));
    }
    for s in steps {
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let out = c.ctl(0, &args);
        assert_eq!(out.code, 0, "{kind}: {}: {out}", s.display());
    }
    let mut t = Vec::new();
    for (cert, args) in [
        (&ro, "get k"),
        (&ro, "put k v"),
        (&ro, "user get ro"),
        (&ro, "user list"),
        (&ro, "watch z"),
        (&ro, "defrag"),
        (&ro, "member list"),
        (&np, "get k"),
        (&np, "put k v"),
        (&stranger, "get k"),
        (&root, "user list"),
        (&root, "put k v1"),
        (&root, "defrag"),
        // A token wins over the certificate.
        (&ro, "put k v2 --user rw:rw"),
        (&root, "put k v3 --user ro:ro"),
        (&ro, "get k --user wo:wo"),
        (&stranger, "get k --user ro:ro"),
        (&ro, "get k --user np:x"),
        (&ro, "get k --user ro:bad"),
        (&root, "get k"),
    ] {
        let args: Vec<String> = oxcd_process_tests::scenario::split(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        t.push(with_cert(&c, &set, cert, &args));
    }
    t
}

#[test]
fn cn_login_like_etcd() {
    compare_kinds("cn_login", cn_login);
}
