//! scratch
use vmc_model::NewImagePolicy;
use crate::fixtures::*;
fn big(db: &crate::db::TestDb) {
    let store = db.open();
    let signer = identity("/CN=S", "/CN=CA");
    store.add_endorser("s", std::slice::from_ref(&signer)).unwrap();
    let sub = subscription(&store, "https://example.org/list", NewImagePolicy::Subscribe);
    for v in 1..=3 {
        let images = (0..10_000).map(|i| image(&format!("img-{i}"), 'a')).collect();
        let l = list("L", &v.to_string(), &signer, images);
        let t = std::time::Instant::now();
        import(&store, sub, &l, &signer);
        eprintln!("{} import v{v}: {:?}", db.backend(), t.elapsed());
    }
    let t = std::time::Instant::now();
    let n = store.images(&Default::default()).unwrap().len();
    eprintln!("{} images() {n}: {:?}", db.backend(), t.elapsed());
}
crate::on_both_backends!(big);
