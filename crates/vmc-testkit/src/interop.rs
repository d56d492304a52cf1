//! Interop fixtures: signed image lists made by another implementation than vmc's.
//!
//! - [`openssl_cli`]: the openssl-cli fixture set, regenerated at test time by running the
//!   `openssl` command line (`openssl req`, `openssl ca`, `openssl smime -sign`) — a real interop
//!   check against another implementation, with fresh keys on every run. The layout is the one
//!   `shared/interop/openssl-cli` documents (`pki/`, `lists/`, `images/`, `MANIFEST.json`), and
//!   every date is fixed relative to the manifest's `verify_at` (2027-06-01T00:00:00Z), the clock
//!   tests inject, so the fixtures never expire.
//! - [`cloudkeeper`]: fixtures of the cloudkeeper project that cannot be regenerated (signed in
//!   2018 by a key nobody has). They are read from the directory named by `VMC_INTEROP_DIR`
//!   (default: `shared/interop` beside the checkout); when it is absent the test says it is
//!   skipped ([`crate::skip`]), and under `VMC_REQUIRE_INTEROP=1` (set by `.ci/run`) it fails.
//!
//! The generated tree lives in a temporary directory made once per test process
//! (`vmc-interop-<pid>-*`); directories left by processes that have ended are removed when the
//! next one is made.

#![allow(
    clippy::expect_used,
    reason = "test support: a fixture that cannot be made is a failed test, said by the panic"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The variable naming the directory that holds `cloudkeeper/`.
pub const INTEROP_DIR_ENV: &str = "VMC_INTEROP_DIR";
/// The variable that makes an absent interop directory a failure instead of a skip.
pub const REQUIRE_INTEROP_ENV: &str = "VMC_REQUIRE_INTEROP";

/// The clock every date of the openssl-cli fixtures is written for.
pub const VERIFY_AT: &str = "2027-06-01T00:00:00Z";
/// The list identifier of the openssl-cli lists.
pub const LIST_ID: &str = "4a58acb9-e7f1-4128-9edf-8c2df3696d7c";
/// The base URL the lists name their images under (tests serve `images/` and rewrite it).
pub const BASE_URL: &str = "http://127.0.0.1:8000";
/// The root CA's subject.
pub const ROOT_DN: &str = "/C=XX/O=InteropGrid/CN=Interop Root CA";
/// The intermediate CA's subject (issued by the root).
pub const INTER_DN: &str = "/C=XX/O=InteropGrid/CN=Interop Intermediate CA";
/// The rogue CA's subject (in no CA directory).
pub const ROGUE_CA_DN: &str = "/C=XX/O=InteropRogue/CN=Interop Rogue CA";
/// The endorser's subject (also the rogue signer's).
pub const ENDORSER_DN: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser";
/// A second endorser, issued by the intermediate CA.
pub const ENDORSER2_DN: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Second Endorser";
/// A valid certificate that endorses nothing.
pub const OTHER_DN: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Other Endorser";
/// A certificate the root's CRL revokes (serial `1002`).
pub const REVOKED_DN: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Revoked Endorser";
/// A certificate that expired in 2021.
pub const EXPIRED_DN: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Expired Endorser";

/// Validity of the CAs and the good certificates and CRLs: well around [`VERIFY_AT`].
const VALID_FROM: &str = "20260101000000Z";
const VALID_UNTIL: &str = "20361231000000Z";

/// The three images: identifier, size.
const IMAGES: [(&str, u64); 3] = [
    ("f3cba9bb-ce26-4020-b238-77a60f7fe90c", 262_144),
    ("a8cf1898-4ce2-49a2-973c-01fba99f95d8", 524_288),
    ("71f63e65-6e0d-4669-8260-abbe8c6eb38e", 786_432),
];

/// The openssl-cli fixture tree, generated once per process (panics when `openssl` fails or is
/// missing: these tests need the `openssl` binary, as the README says).
pub fn openssl_cli() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("vmc-interop-{}-", std::process::id()))
            .tempdir()
            .expect("temporary directory for the interop fixtures")
            .keep();
        Generator::new(&dir).run();
        dir
    })
}

/// The cloudkeeper fixture directory, or `None` (after saying the test is skipped) when the
/// interop directory is absent. Panics when it is absent and `VMC_REQUIRE_INTEROP=1`.
pub fn cloudkeeper() -> Option<PathBuf> {
    let root = std::env::var_os(INTEROP_DIR_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop"),
        PathBuf::from,
    );
    let required = std::env::var_os(REQUIRE_INTEROP_ENV).is_some_and(|v| v == "1");
    match cloudkeeper_in(&root, required) {
        Ok(Some(dir)) => Some(dir),
        Ok(None) => {
            crate::skip::skipped(&format!(
                "the cloudkeeper fixtures are not here: set {INTEROP_DIR_ENV} to the directory \
                 holding cloudkeeper/ (CI has them in shared/interop)"
            ));
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// `root/cloudkeeper` when it holds the fixtures; else `None`, or the failure to report when
/// they are `required`.
fn cloudkeeper_in(root: &Path, required: bool) -> Result<Option<PathBuf>, String> {
    let dir = root.join("cloudkeeper");
    if dir.join("ca").is_dir() {
        Ok(Some(dir))
    } else if required {
        Err(format!(
            "{REQUIRE_INTEROP_ENV}=1 but the cloudkeeper fixtures are not at {}: set \
             {INTEROP_DIR_ENV} to the directory holding cloudkeeper/",
            dir.display()
        ))
    } else {
        Ok(None)
    }
}

/// Removes `vmc-interop-<pid>-*` directories of processes that no longer run.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("vmc-interop-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Deterministic pseudo-random image bytes (xorshift), so the images' sha512s are stable.
fn image_bytes(index: usize, len: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1);
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(usize::try_from(len).unwrap_or(0));
    out
}

/// One signing CA made with `openssl ca`: its directory, certificate and key.
struct CaFiles {
    dir: PathBuf,
}

impl CaFiles {
    fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    fn config(&self) -> PathBuf {
        self.dir.join("ca.cnf")
    }
    fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl.pem")
    }
}

struct Generator {
    root: PathBuf,
    work: PathBuf,
}

impl Generator {
    fn new(root: &Path) -> Generator {
        let work = root.join(".work");
        fs::create_dir_all(&work).expect("interop work dir");
        Generator {
            root: root.to_owned(),
            work,
        }
    }

    fn run(&self) {
        for sub in ["pki", "lists", "images"] {
            fs::create_dir_all(self.root.join(sub)).expect("interop fixture dir");
        }
        let pki = self.root.join("pki");

        // The CAs: a root, an intermediate under it, and a rogue root no directory holds.
        let root = self.ca("root", ROOT_DN, None, "01");
        let inter = self.ca("inter", INTER_DN, Some(&root), "1004");
        let rogue_ca = self.ca("rogue-ca", ROGUE_CA_DN, None, "01");
        copy(&inter.cert(), &pki.join("inter-ca.pem"));
        copy(&rogue_ca.cert(), &pki.join("rogue-ca.pem"));

        // Serials (hex) as in the shared set: endorser 1000, other 1001, revoked 1002, expired
        // 1003, the intermediate 1004; endorser2 2000 under the intermediate.
        self.leaf(
            &root,
            "endorser",
            ENDORSER_DN,
            "1000",
            VALID_FROM,
            VALID_UNTIL,
        );
        self.leaf(&root, "other", OTHER_DN, "1001", VALID_FROM, VALID_UNTIL);
        self.leaf(
            &root,
            "revoked",
            REVOKED_DN,
            "1002",
            VALID_FROM,
            VALID_UNTIL,
        );
        self.leaf(
            &root,
            "expired",
            EXPIRED_DN,
            "1003",
            "20200101000000Z",
            "20210101000000Z",
        );
        self.leaf(
            &inter,
            "endorser2",
            ENDORSER2_DN,
            "2000",
            VALID_FROM,
            VALID_UNTIL,
        );
        self.leaf(
            &rogue_ca,
            "rogue",
            ENDORSER_DN,
            "1000",
            VALID_FROM,
            VALID_UNTIL,
        );

        // CRLs: the root revokes `revoked`; the intermediate revokes nothing; a stale root CRL.
        self.openssl(&[
            "ca",
            "-batch",
            "-config",
            path(&root.config()),
            "-revoke",
            path(&pki.join("revoked.pem")),
        ]);
        self.crl(&root, &root.crl(), VALID_FROM, VALID_UNTIL);
        self.crl(&inter, &inter.crl(), VALID_FROM, VALID_UNTIL);
        let stale = self.work.join("root-stale.crl.pem");
        self.crl(&root, &stale, "20200101000000Z", "20200201000000Z");

        // The hashed CA directories.
        let root_hash = self.hash(&root.cert());
        let inter_hash = self.hash(&inter.cert());
        let dirs: [(&str, bool, Option<&Path>, bool); 4] = [
            ("ca-dir", true, Some(&root.crl()), true),
            ("ca-dir-stale", true, Some(&stale), true),
            ("ca-dir-nocrl", true, None, false),
            ("ca-dir-nointer", false, Some(&root.crl()), false),
        ];
        for (name, with_inter, root_crl, inter_crl) in dirs {
            let dir = pki.join(name);
            fs::create_dir_all(&dir).expect("CA directory");
            copy(&root.cert(), &dir.join(format!("{root_hash}.0")));
            if let Some(crl) = root_crl {
                copy(crl, &dir.join(format!("{root_hash}.r0")));
            }
            if with_inter {
                copy(&inter.cert(), &dir.join(format!("{inter_hash}.0")));
                if inter_crl {
                    copy(&inter.crl(), &dir.join(format!("{inter_hash}.r0")));
                }
            }
        }

        // The images and the lists.
        let mut images = Vec::new();
        for (index, (id, size)) in IMAGES.iter().enumerate() {
            let bytes = image_bytes(index, *size);
            fs::write(self.root.join(format!("images/image{index}.img")), &bytes)
                .expect("interop image");
            images.push(image_json(index, id, *size, &sha512_hex(&bytes)));
        }
        let manifest = self.lists(&images);
        fs::write(
            self.root.join("MANIFEST.json"),
            serde_json::to_vec_pretty(&manifest).expect("manifest JSON"),
        )
        .expect("MANIFEST.json");
        let _ = fs::remove_dir_all(&self.work);
    }

    /// Writes every list and returns the manifest.
    fn lists(&self, images: &[Value]) -> Value {
        let good = list_json(images);
        let dn = |dn: &str| with(&good, |l| l["hv:endorser"]["hv:x509"]["hv:dn"] = json!(dn));
        let version = |v: &str| with(&good, |l| l["hv:version"] = json!(v));
        let image_id = |index: usize, id: &str| {
            with(&good, |l| {
                l["hv:images"][index]["hv:image"]["dc:identifier"] = json!(id);
            })
        };
        let table: Vec<Case<'_>> = vec![
            (
                "good.smime",
                pretty(&good),
                "endorser",
                &[],
                "accept",
                "detached multipart/signed, sha256",
                &[],
            ),
            (
                "good-sha1.smime",
                pretty(&good),
                "endorser",
                &["-md", "sha1"],
                "accept",
                "legacy sha1 digest, as old signing tools emit",
                &[],
            ),
            (
                "good-opaque.p7m",
                pretty(&good),
                "endorser",
                &["-nodetach"],
                "accept",
                "opaque application/pkcs7-mime",
                &[],
            ),
            (
                "good-pem.p7",
                pretty(&good),
                "endorser",
                &["-nodetach", "-outform", "PEM"],
                "accept",
                "PEM PKCS#7 signed-data",
                &[],
            ),
            (
                "good-v2.smime",
                pretty(&version("2")),
                "endorser",
                &[],
                "accept",
                "newer hv:version after good.smime",
                &[],
            ),
            (
                "rollback-v0.smime",
                pretty(&version("0.9")),
                "endorser",
                &[],
                "reject",
                "hv:version lower than an accepted one",
                &[("after", "good.smime")],
            ),
            (
                "revoked.smime",
                pretty(&dn(REVOKED_DN)),
                "revoked",
                &[],
                "reject",
                "signer revoked by CA CRL",
                &[("endorser", "revoked")],
            ),
            (
                "expired-signer.smime",
                pretty(&dn(EXPIRED_DN)),
                "expired",
                &[],
                "reject",
                "signer certificate expired",
                &[("endorser", "expired")],
            ),
            (
                "other-signer.smime",
                pretty(&dn(OTHER_DN)),
                "other",
                &[],
                "reject",
                "valid certificate, but not an endorser of this subscription",
                &[],
            ),
            (
                "rogue.smime",
                pretty(&with(&good, |l| {
                    l["hv:endorser"]["hv:x509"]["hv:ca"] = json!(ROGUE_CA_DN)
                })),
                "rogue",
                &[],
                "reject",
                "signer issued by a CA not in the CA directory; same subject DN as the endorser",
                &[],
            ),
            (
                "json-dn-mismatch.smime",
                pretty(&dn(OTHER_DN)),
                "endorser",
                &[],
                "reject",
                "hv:endorser in the JSON names another DN than the signer",
                &[],
            ),
            (
                "expired-list.smime",
                pretty(&with(&good, |l| {
                    l["dc:date:created"] = json!("2027-04-02T00:00:00Z");
                    l["dc:date:expires"] = json!("2027-05-31T00:00:00Z");
                })),
                "endorser",
                &[],
                "reject",
                "dc:date:expires in the past; images of the list must expire",
                &[],
            ),
            (
                "future-created.smime",
                pretty(&with(&good, |l| {
                    l["dc:date:created"] = json!("2027-06-03T00:00:00Z")
                })),
                "endorser",
                &[],
                "reject",
                "dc:date:created in the future",
                &[],
            ),
            (
                "not-json.smime",
                b"this is not json\n".to_vec(),
                "endorser",
                &[],
                "reject",
                "signed payload is not JSON",
                &[],
            ),
            (
                "missing-keys.smime",
                pretty(&with(&good, |l| {
                    remove(l, "dc:identifier");
                    remove(&mut l["hv:images"][0]["hv:image"], "sl:checksum:sha512");
                })),
                "endorser",
                &[],
                "reject",
                "mandatory keys missing",
                &[],
            ),
            (
                "path-traversal.smime",
                pretty(&image_id(1, "../../../../owned-by-list")),
                "endorser",
                &[],
                "reject-image",
                "an image identifier that is not a safe file name must never become a path",
                &[],
            ),
            (
                "duplicate-ids.smime",
                pretty(&image_id(1, IMAGES[0].0)),
                "endorser",
                &[],
                "reject",
                "two images share one dc:identifier",
                &[],
            ),
            (
                "other-identifier.smime",
                pretty(&with(&good, |l| {
                    l["dc:identifier"] = json!("90b65ef9-e3d5-4e84-8b45-c10af9fa95fe");
                })),
                "endorser",
                &[],
                "reject",
                "dc:identifier differs from the subscription's list",
                &[("after", "good.smime")],
            ),
            (
                "bad-checksum.smime",
                pretty(&with(&good, |l| {
                    l["hv:images"][2]["hv:image"]["sl:checksum:sha512"] = json!("0".repeat(128));
                })),
                "endorser",
                &[],
                "accept-list",
                "list is valid, but image 2's file does not match its sha512: it must never enter \
              the cache",
                &[],
            ),
            (
                "removed-image.smime",
                pretty(&with(&good, |l| {
                    l["hv:version"] = json!("3");
                    if let Some(images) = l["hv:images"].as_array_mut() {
                        images.truncate(2);
                    }
                })),
                "endorser",
                &[],
                "accept",
                "image 2 removed: it must expire",
                &[("after", "good-v2.smime")],
            ),
        ];
        let mut cases = serde_json::Map::new();
        let mut case = |name: &str, expect: &str, why: &str, extra: &[(&str, &str)]| {
            let mut entry = json!({"expect": expect, "why": why});
            for (key, value) in extra {
                entry[*key] = json!(value);
            }
            cases.insert(name.to_owned(), entry);
        };
        for (name, payload, signer, args, expect, why, extra) in table {
            let signed = self.sign_to_bytes(&payload, &self.signer(signer), args);
            self.write_list(name, &signed);
            case(name, expect, why, extra);
        }
        // Signed as good.smime, then one word of the payload changed.
        let signed = self.sign_to_bytes(&pretty(&good), &self.signer("endorser"), &[]);
        let tampered = replace_once(&signed, b"Test image 0", b"Test image X");
        self.write_list("tampered.smime", &tampered);
        case(
            "tampered.smime",
            "reject",
            "payload changed after signing",
            &[],
        );
        self.write_list("unsigned.json", &pretty(&good));
        case("unsigned.json", "reject", "not signed at all", &[]);

        let manifest_images: Vec<Value> = images.iter().map(|i| i["hv:image"].clone()).collect();
        json!({
            "list_identifier": LIST_ID,
            "images": manifest_images,
            "cases": cases,
            "endorser": {"subject": ENDORSER_DN, "issuer": ROOT_DN},
            "base_url": BASE_URL,
            "verify_at": VERIFY_AT,
        })
    }

    /// Makes a CA in `work/<name>` with certificate serial `serial` (hex): self-signed
    /// (`issuer` `None`) or issued by `issuer`.
    fn ca(&self, name: &str, subject: &str, issuer: Option<&CaFiles>, serial: &str) -> CaFiles {
        let dir = self.work.join(name);
        fs::create_dir_all(dir.join("newcerts")).expect("CA work dir");
        fs::write(dir.join("index.txt"), b"").expect("CA index");
        let serial_file = issuer.map_or_else(|| dir.join("serial"), |p| p.dir.join("serial"));
        fs::write(serial_file, format!("{serial}\n")).expect("CA serial");
        fs::write(dir.join("crlnumber"), b"01\n").expect("CA crlnumber");
        fs::write(dir.join("ca.cnf"), ca_config(&dir)).expect("CA config");
        let ca = CaFiles { dir };
        let csr = ca.dir.join("ca.csr");
        self.request(subject, &ca.key(), &csr);
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-preserveDN",
            "-extensions",
            "v3_ca",
        ];
        let (config, cert, key);
        match issuer {
            None => {
                config = path(&ca.config()).to_owned();
                key = path(&ca.key()).to_owned();
                args.extend(["-selfsign", "-config", &config, "-keyfile", &key]);
                cert = None;
            }
            Some(parent) => {
                config = path(&parent.config()).to_owned();
                key = path(&parent.key()).to_owned();
                cert = Some(path(&parent.cert()).to_owned());
                args.extend(["-config", &config, "-keyfile", &key]);
            }
        }
        if let Some(cert) = &cert {
            args.extend(["-cert", cert]);
        }
        let csr_s = path(&csr).to_owned();
        let out = path(&ca.cert()).to_owned();
        args.extend([
            "-startdate",
            VALID_FROM,
            "-enddate",
            VALID_UNTIL,
            "-in",
            &csr_s,
            "-out",
            &out,
        ]);
        self.openssl(&args);
        ca
    }

    /// Issues `pki/<name>.pem` (+ `.key`) for `subject` from `ca`, with serial `serial` (hex).
    fn leaf(&self, ca: &CaFiles, name: &str, subject: &str, serial: &str, from: &str, until: &str) {
        let pki = self.root.join("pki");
        let key = pki.join(format!("{name}.key"));
        let cert = pki.join(format!("{name}.pem"));
        let csr = self.work.join(format!("{name}.csr"));
        self.request(subject, &key, &csr);
        fs::write(ca.dir.join("serial"), format!("{serial}\n")).expect("CA serial");
        self.openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-preserveDN",
            "-config",
            path(&ca.config()),
            "-cert",
            path(&ca.cert()),
            "-keyfile",
            path(&ca.key()),
            "-extensions",
            "v3_leaf",
            "-startdate",
            from,
            "-enddate",
            until,
            "-in",
            path(&csr),
            "-out",
            path(&cert),
        ]);
    }

    /// A new RSA key at `key` and a certificate request for `subject` at `csr`.
    fn request(&self, subject: &str, key: &Path, csr: &Path) {
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            path(key),
            "-out",
            path(csr),
        ]);
    }

    /// Writes `ca`'s CRL of the certificates revoked so far to `out`.
    fn crl(&self, ca: &CaFiles, out: &Path, last: &str, next: &str) {
        self.openssl(&[
            "ca",
            "-batch",
            "-gencrl",
            "-config",
            path(&ca.config()),
            "-cert",
            path(&ca.cert()),
            "-keyfile",
            path(&ca.key()),
            "-crl_lastupdate",
            last,
            "-crl_nextupdate",
            next,
            "-out",
            path(out),
        ]);
    }

    /// The subject hash `openssl x509 -hash` prints (the CA directory's file name).
    fn hash(&self, cert: &Path) -> String {
        let out = self.openssl(&["x509", "-hash", "-noout", "-in", path(cert)]);
        String::from_utf8_lossy(&out).trim().to_owned()
    }

    fn signer(&self, name: &str) -> Signer {
        let pki = self.root.join("pki");
        Signer {
            cert: pki.join(format!("{name}.pem")),
            key: pki.join(format!("{name}.key")),
        }
    }

    /// Signs `payload` with `openssl smime -sign` (sha256 unless `args` say otherwise).
    fn sign_to_bytes(&self, payload: &[u8], signer: &Signer, args: &[&str]) -> Vec<u8> {
        let input = self.work.join("payload");
        fs::write(&input, payload).expect("payload");
        let mut all = vec![
            "smime",
            "-sign",
            "-in",
            path(&input),
            "-signer",
            path(&signer.cert),
            "-inkey",
            path(&signer.key),
        ];
        if !args.contains(&"-md") {
            all.extend(["-md", "sha256"]);
        }
        all.extend(args);
        self.openssl(&all)
    }

    fn write_list(&self, name: &str, bytes: &[u8]) {
        fs::write(self.root.join("lists").join(name), bytes).expect("interop list");
    }

    /// Runs `openssl ARGS` in the work directory; its stdout, or a panic naming the command.
    fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.work)
            .env("OPENSSL_CONF", "/dev/null")
            .output()
            .unwrap_or_else(|e| {
                panic!("the interop fixtures need the `openssl` command line: {e}")
            });
        assert!(
            out.status.success(),
            "openssl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

struct Signer {
    cert: PathBuf,
    key: PathBuf,
}

/// One signed list of the set: file name, payload, signer (a `pki/` name), extra `openssl
/// smime -sign` arguments, the manifest's verdict and why, and extra manifest keys (`after`,
/// `endorser`).
type Case<'a> = (
    &'a str,
    Vec<u8>,
    &'a str,
    &'a [&'a str],
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
);

/// The `openssl ca` configuration of the CA whose files are in `dir`.
fn ca_config(dir: &Path) -> String {
    format!(
        "[ ca ]\n\
         default_ca = ca_default\n\
         [ ca_default ]\n\
         dir = {dir}\n\
         database = $dir/index.txt\n\
         new_certs_dir = $dir/newcerts\n\
         serial = $dir/serial\n\
         crlnumber = $dir/crlnumber\n\
         certificate = $dir/ca.pem\n\
         private_key = $dir/ca.key\n\
         default_md = sha256\n\
         default_crl_days = 3650\n\
         policy = policy_any\n\
         unique_subject = no\n\
         email_in_dn = no\n\
         [ policy_any ]\n\
         countryName = optional\n\
         stateOrProvinceName = optional\n\
         organizationName = optional\n\
         organizationalUnitName = optional\n\
         commonName = supplied\n\
         [ v3_ca ]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n\
         [ v3_leaf ]\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment\n\
         extendedKeyUsage = clientAuth,emailProtection\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid,issuer\n",
        dir = dir.display()
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn sha512_hex(bytes: &[u8]) -> String {
    let digest = openssl::sha::sha512(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Image `index` in the lists' form (keys in the sorted order the shared set has).
fn image_json(index: usize, id: &str, size: u64, sha512: &str) -> Value {
    json!({"hv:image": {
        "ad:mpuri": format!("https://marketplace.example/store/vm/image/{index}/"),
        "dc:description": format!("Test image {index}"),
        "dc:identifier": id,
        "dc:title": format!("Interop OS {index}"),
        "hv:format": "RAW",
        "hv:hypervisor": "KVM",
        "hv:size": size,
        "hv:uri": format!("{BASE_URL}/images/image{index}.img"),
        "hv:version": format!("1.{index}"),
        "sl:arch": "x86_64",
        "sl:checksum:sha512": sha512,
        "sl:comments": "",
        "sl:os": "Linux",
        "sl:osname": "TestOS",
        "sl:osversion": "9",
    }})
}

/// The good list, version 1.
fn list_json(images: &[Value]) -> Value {
    json!({"hv:imagelist": {
        "ad:vo": "test.vo.example",
        "dc:date:created": "2027-05-31T23:00:00Z",
        "dc:date:expires": "2027-06-29T00:00:00Z",
        "dc:description": "Interop endorsed images",
        "dc:identifier": LIST_ID,
        "dc:source": format!("{BASE_URL}/"),
        "dc:title": "Interop list",
        "hv:endorser": {"hv:x509": {
            "dc:creator": "Interop Endorser",
            "hv:ca": ROOT_DN,
            "hv:dn": ENDORSER_DN,
            "hv:email": "endorser@example.org",
        }},
        "hv:images": images,
        "hv:uri": format!("{BASE_URL}/lists/good.smime"),
        "hv:version": "1",
    }})
}

/// A copy of `doc` with its `hv:imagelist` changed by `change`.
fn with(doc: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut copy = doc.clone();
    change(&mut copy["hv:imagelist"]);
    copy
}

fn remove(object: &mut Value, key: &str) {
    if let Some(map) = object.as_object_mut() {
        map.shift_remove(key);
    }
}

/// `doc` as the publishing tools write it: four-space indents, no final newline.
fn pretty(doc: &Value) -> Vec<u8> {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    doc.serialize(&mut ser).expect("list JSON");
    out
}

/// `haystack` with the first `from` replaced by `to` (same length); panics when absent.
fn replace_once(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text to tamper with is in the signed message");
    let mut out = haystack.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_cloudkeeper_fixtures_skip_unless_required() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(cloudkeeper_in(root.path(), false), Ok(None));
        let err = cloudkeeper_in(root.path(), true).unwrap_err();
        assert!(err.contains("VMC_REQUIRE_INTEROP=1"), "{err}");
        std::fs::create_dir_all(root.path().join("cloudkeeper/ca")).unwrap();
        assert_eq!(
            cloudkeeper_in(root.path(), true),
            Ok(Some(root.path().join("cloudkeeper")))
        );
    }

    #[test]
    fn the_openssl_cli_set_has_every_case_of_its_manifest() {
        let dir = openssl_cli();
        let manifest: Value =
            serde_json::from_slice(&fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap();
        let cases = manifest["cases"].as_object().unwrap();
        assert_eq!(cases.len(), 22);
        for name in cases.keys() {
            assert!(dir.join("lists").join(name).is_file(), "{name}");
        }
        for variant in ["ca-dir", "ca-dir-stale", "ca-dir-nocrl", "ca-dir-nointer"] {
            assert!(dir.join("pki").join(variant).is_dir(), "{variant}");
        }
        let image0 = fs::read(dir.join("images/image0.img")).unwrap();
        assert_eq!(image0.len(), 262_144);
        assert_eq!(
            manifest["images"][0]["sl:checksum:sha512"],
            json!(sha512_hex(&image0))
        );
    }
}
