//! Passes that bring the hosted partitions in line with the metadata image run
//! concurrently (the change watcher, the request that made the change): none may
//! act on an image older than one another pass applied before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use karst_broker::metadata::TopicMeta;
use karst_broker::{Broker, BrokerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_applying_an_older_image_never_deletes_a_newer_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() }).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let passes: Vec<_> = (0..3)
        .map(|_| {
            let (b, stop) = (broker.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    b.apply_image();
                }
            })
        })
        .collect();
    let names: Vec<String> = (0..150).map(|i| format!("raced-{i}")).collect();
    let mut opened = Vec::new();
    for name in &names {
        let meta =
            TopicMeta { name: name.clone(), id: uuid::Uuid::new_v4(), partitions: 1, replication_factor: 1, configs: BTreeMap::new() };
        broker.create_topic(meta).await.expect("create");
        opened.push(broker.partitions.get(name, 0).expect("opened by its creation"));
    }
    stop.store(true, Ordering::Relaxed);
    for p in passes {
        p.join().expect("pass");
    }
    broker.apply_image();
    // A deleted partition is opened again by the next pass, empty: a new one.
    let replaced: Vec<&String> = names
        .iter()
        .zip(&opened)
        .filter(|(n, p)| broker.partitions.get(n, 0).is_none_or(|now| !Arc::ptr_eq(&now, p)))
        .map(|(n, _)| n)
        .collect();
    assert!(replaced.is_empty(), "topics whose partitions a stale pass deleted: {replaced:?}");
}
