//! Support code for Karst's end-to-end tests.
//!
//! Every test in `tests/tests/` starts its own broker with [`Broker::start`] (a fresh
//! temporary data directory and a port picked by the OS), drives it with a real client
//! (kcat, confluent-kafka, rdkafka, sarama, franz-go, kafka-go, KafkaJS, the Java client) or with the raw protocol client in [`raw`],
//! and waits for conditions with [`wait_until`] / [`wait_for`] rather than sleeping.
//! Differential tests also start Apache Kafka, the reference, with [`KafkaBroker::start`].

pub mod broker;
pub mod certs;
pub mod clients;
pub mod cluster;
pub mod fields;
pub mod garbage;
pub mod group;
pub mod java;
pub mod kafka;
pub mod metrics;
pub mod modern;
pub mod proxy;
pub mod raw;
pub mod share;
pub mod txn;
pub mod wait;

pub use broker::{karst_bin, workspace_root, Broker, Launch};
pub use clients::{go_binary, kcat_consume, kcat_produce, python_script, run_checked, run_command, show_output};
pub use kafka::{clients_classpath, Jars, KafkaBroker, KafkaCluster, KafkaUnavailable};
pub use modern::{against_karst_and_kafka, go_module_binary, go_scenario_on_both, node_program, ClientUnavailable};
pub use wait::{wait_for, wait_until};

/// A topic name that no other test (or earlier run on the same data dir) uses.
pub fn unique_topic(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
