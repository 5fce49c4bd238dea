//! `hoist` through a real forward proxy, tinyproxy (installed by `tests/peers/install.sh`,
//! started here on loopback with a configuration of its own), to a TLS `hoist serve`: pulls
//! and pushes through `HTTPS_PROXY` and `--proxy` (CONNECT tunnels), `NO_PROXY`, and proxy
//! authentication. The proxy's log shows what went through it.
//!
//! A proxy is never used for loopback (as in Go), so the registry is addressed by this
//! machine's host name, which must resolve to an address of this machine. Proxy settings go
//! into the environment of each `hoist` process, never of this one (tests run in parallel).

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_layout::LayoutStore;
use oci_types::Digest;
use tempfile::TempDir;

use crate::cli::Hoist;
use crate::server_interop::{layout_image, layout_tag_digest, oci_ref};
use crate::support::{free_addr, hoist_binary, peer, run};

/// Every variable that could send `hoist` through a proxy.
const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// tinyproxy on 127.0.0.1, killed on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy allowing `CONNECT` to `connect_port` only, asking for `auth` if given.
    fn start(bin: &Path, connect_port: u16, auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_addr().port();
        let log = dir.path().join("tinyproxy.log");
        let mut config = format!(
            "Listen 127.0.0.1\nPort {port}\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
             DisableViaHeader Yes\nMaxClients 64\nTimeout 60\nLogLevel Connect\n\
             LogFile \"{}\"\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let config_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut proxy = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("tinyproxy exited ({status}):\n{}", proxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy does not listen:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// `http://[userinfo@]127.0.0.1:PORT`.
    fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(userinfo) => format!("http://{userinfo}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// How many `CONNECT`s to `target` it logged.
    fn connects_to(&self, target: &str) -> usize {
        let line = format!("CONNECT {target} HTTP/1.1");
        self.log().lines().filter(|l| l.contains(&line)).count()
    }

    /// How many requests of any kind it logged.
    fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("Request (file descriptor"))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hoist serve --memory` over TLS on `ip`, killed on drop.
struct TlsServe {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    _dir: TempDir,
}

impl TlsServe {
    fn start(ip: IpAddr, certificate: &Path, key: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = {
            let listener = TcpListener::bind((ip, 0)).unwrap();
            listener.local_addr().unwrap()
        };
        let stderr = dir.path().join("serve.log");
        let child = Command::new(hoist_binary())
            .args(["serve", "--memory", "--tls-cert"])
            .arg(certificate)
            .arg("--tls-key")
            .arg(key)
            .arg("--addr")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Self {
            child,
            addr,
            stderr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("hoist serve exited ({status}):\n{}", serve.log());
            }
            if serve.log().contains("hoist: serving") && std::net::TcpStream::connect(addr).is_ok()
            {
                return serve;
            }
            assert!(
                Instant::now() < deadline,
                "hoist serve did not start:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for TlsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This machine's host name and an address of this machine it resolves to: a registry name
/// that is not loopback by its spelling (which a proxy is never used for) but that tinyproxy
/// connects to here.
fn machine_name() -> Option<(String, IpAddr)> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let usable = (!name.is_empty() && name != "localhost" && name.parse::<IpAddr>().is_err())
        .then(|| (name.as_str(), 0).to_socket_addrs().ok())
        .flatten()
        .and_then(|mut addrs| {
            addrs.find(|a| a.is_ipv4() && TcpListener::bind((a.ip(), 0)).is_ok())
        });
    match usable {
        Some(addr) => Some((name, addr.ip())),
        None => {
            crate::support::skip(format_args!(
                "the host name {name:?} does not resolve to an address of this machine, \
                 which the proxy tests need"
            ));
            None
        }
    }
}

/// A CA and a certificate for `name` (DNS SAN) it signed; (CA, certificate, key).
fn certificates_for(openssl: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let path = |file: &str| dir.join(file);
    let text = |p: PathBuf| p.to_str().unwrap().to_owned();
    std::fs::write(
        path("ca.cnf"),
        "[req]\ndistinguished_name=dn\nx509_extensions=v3\nprompt=no\n[dn]\nCN=hoist proxy test CA\n\
         [v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        path("server.ext"),
        format!(
            "subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
             authorityKeyIdentifier=keyid\n"
        ),
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let args = |line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    run(
        openssl,
        args(format!(
            "req -x509 -config {} {ec} -keyout {} -out {} -days 2",
            text(path("ca.cnf")),
            text(path("ca.key")),
            text(path("ca.crt"))
        )),
    );
    run(
        openssl,
        args(format!(
            "req -subj /CN={name} {ec} -keyout {} -out {}",
            text(path("server.key")),
            text(path("server.csr"))
        )),
    );
    run(
        openssl,
        args(format!(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -out {} -days 2 -extfile {}",
            text(path("server.csr")),
            text(path("ca.crt")),
            text(path("ca.key")),
            text(path("server.crt")),
            text(path("server.ext"))
        )),
    );
    (path("ca.crt"), path("server.crt"), path("server.key"))
}

/// A TLS registry under this machine's name, a layout with one image tagged v1, and the
/// programs: everything a test here needs, or `None` after saying what is missing.
struct Setup {
    tinyproxy: PathBuf,
    serve: TlsServe,
    /// `NAME:PORT`.
    registry: String,
    ca: PathBuf,
    source: PathBuf,
    image: Digest,
    hoist: Hoist,
    tmp: TempDir,
}

async fn setup() -> Option<Setup> {
    let tinyproxy = peer("tinyproxy")?;
    let openssl = peer("openssl")?;
    let (name, ip) = machine_name()?;
    let tmp = tempfile::tempdir().unwrap();
    let (ca, certificate, key) = certificates_for(&openssl, tmp.path(), &name);
    let serve = TlsServe::start(ip, &certificate, &key);
    let registry = format!("{name}:{}", serve.addr.port());
    let source = tmp.path().join("source");
    let store = LayoutStore::open(&source).await.unwrap();
    let image = layout_image(&store, "amd64", Some("v1"))
        .await
        .manifest
        .digest;
    Some(Setup {
        tinyproxy,
        serve,
        registry,
        ca,
        source,
        image,
        hoist: Hoist::new(),
        tmp,
    })
}

impl Setup {
    /// `hoist ARGS --ca-file CA` with exactly the proxy variables `env`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = self.hoist.command(args);
        command.arg("--ca-file").arg(&self.ca);
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        command
    }

    /// Runs it; it must succeed. Returns stdout.
    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self.command(args, env).output().unwrap();
        assert!(
            output.status.success(),
            "hoist {args:?} with {env:?} failed ({}):\n{}\nregistry:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.serve.log()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs it; it must fail. Returns the exit code and stderr.
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let output = self.command(args, env).output().unwrap();
        assert!(
            !output.status.success(),
            "hoist {args:?} with {env:?} succeeded"
        );
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn push(&self, repo: &str, env: &[(&str, &str)]) -> String {
        let target = format!("{}/{repo}:v1", self.registry);
        self.ok(&["push", &oci_ref(&self.source, "v1"), &target], env)
    }

    /// Pulls `repo:v1` into a new layout and checks it is the image pushed.
    fn pull(&self, repo: &str, into: &str, env: &[(&str, &str)]) {
        let out = self.tmp.path().join(into);
        let reference = format!("{}/{repo}:v1", self.registry);
        self.ok(&["pull", &reference, out.to_str().unwrap()], env);
        assert_eq!(
            layout_tag_digest(&out, "v1"),
            self.image,
            "pulled {reference}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_and_push_through_https_proxy_and_the_proxy_flag() {
    let Some(setup) = setup().await else {
        return;
    };
    let proxy = Tinyproxy::start(&setup.tinyproxy, setup.serve.addr.port(), None);
    let via_env = [("HTTPS_PROXY", proxy.url(None))];
    let env: Vec<(&str, &str)> = via_env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    setup.push("proxied/app", &env);
    let after_push = proxy.connects_to(&setup.registry);
    assert!(
        after_push >= 1,
        "the push did not go through the proxy:\n{}",
        proxy.log()
    );
    setup.pull("proxied/app", "pulled-env", &env);
    let after_pull = proxy.connects_to(&setup.registry);
    assert!(
        after_pull > after_push,
        "the pull did not go through the proxy"
    );
    // Only tunnels: the proxy never saw a request of the registry in the clear.
    assert_eq!(proxy.requests(), after_pull, "{}", proxy.log());

    // The environment's proxy is used: one that does not exist fails the pull, naming it.
    let dead = format!("http://127.0.0.1:{}", free_addr().port());
    let reference = format!("{}/proxied/app:v1", setup.registry);
    let out = setup.tmp.path().join("pulled-flag");
    let out = out.to_str().unwrap();
    let (_, stderr) = setup.fails(&["pull", &reference, out], &[("HTTPS_PROXY", &dead)]);
    assert!(
        stderr.contains(&format!("cannot reach the proxy {dead}/")),
        "{stderr}"
    );
    // --proxy overrides it.
    let flag = proxy.url(None);
    setup.ok(
        &["--proxy", &flag, "pull", &reference, out],
        &[("HTTPS_PROXY", &dead)],
    );
    assert_eq!(layout_tag_digest(Path::new(out), "v1"), setup.image);
    assert!(proxy.connects_to(&setup.registry) > after_pull);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_proxy_reaches_the_registry_directly() {
    let Some(setup) = setup().await else {
        return;
    };
    let proxy = Tinyproxy::start(&setup.tinyproxy, setup.serve.addr.port(), None);
    let url = proxy.url(None);
    let name = setup.registry.split(':').next().unwrap().to_owned();
    let suffix = format!(".{name}");
    let with_port = setup.registry.clone();
    setup.push("direct/app", &[("HTTPS_PROXY", &url), ("NO_PROXY", &name)]);
    for (i, no_proxy) in [
        ("NO_PROXY", name.as_str()),
        ("no_proxy", with_port.as_str()),
        ("NO_PROXY", suffix.as_str()),
        ("NO_PROXY", "other.example, *"),
    ]
    .into_iter()
    .enumerate()
    {
        setup.pull(
            "direct/app",
            &format!("pulled-{i}"),
            &[("HTTPS_PROXY", &url), no_proxy],
        );
    }
    assert_eq!(proxy.requests(), 0, "{}", proxy.log());
    // A NO_PROXY entry for another port of the same host does not apply.
    let other_port = format!("{name}:1");
    setup.pull(
        "direct/app",
        "pulled-other-port",
        &[("HTTPS_PROXY", &url), ("NO_PROXY", &other_port)],
    );
    assert!(proxy.connects_to(&setup.registry) >= 1, "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_authentication() {
    let Some(setup) = setup().await else {
        return;
    };
    let proxy = Tinyproxy::start(
        &setup.tinyproxy,
        setup.serve.addr.port(),
        Some(("hoist", "s3cret")),
    );
    let good = proxy.url(Some("hoist:s3cret"));
    setup.push("auth/app", &[("HTTPS_PROXY", &good)]);
    setup.pull("auth/app", "pulled", &[("HTTPS_PROXY", &good)]);
    assert!(proxy.connects_to(&setup.registry) >= 2, "{}", proxy.log());

    let reference = format!("{}/auth/app:v1", setup.registry);
    let out = setup.tmp.path().join("refused");
    let out = out.to_str().unwrap();
    // No credentials: 407, as the standard says (tinyproxy 1.11 answers some of these with
    // 401 instead, as it does wrong credentials); authentication refused is exit code 4.
    let none = proxy.url(None);
    let (code, stderr) = setup.fails(&["pull", &reference, out], &[("HTTPS_PROXY", &none)]);
    assert_eq!(code, 4, "{stderr}");
    let refused = |status: &str| {
        format!(
            "the proxy {none}/ answered {status} to CONNECT {}",
            setup.registry
        )
    };
    assert!(
        stderr.contains(&refused("407 Proxy Authentication Required"))
            || stderr.contains(&refused("401 Unauthorized")),
        "{stderr}"
    );
    // Wrong credentials: tinyproxy answers 401; named, and the password is not shown.
    let wrong = proxy.url(Some("hoist:wrong"));
    let (code, stderr) = setup.fails(&["pull", &reference, out], &[("HTTPS_PROXY", &wrong)]);
    assert_eq!(code, 4, "{stderr}");
    // The proxy is named by its address; its credentials are not shown.
    let shown = format!("{none}/");
    assert!(
        stderr.contains(&format!("the proxy {shown} answered 401"))
            && stderr.contains("other credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "{stderr}");
}
