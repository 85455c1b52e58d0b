// A Kafka Streams application (kafka-streams 4.4) against a broker: run by
// tests/tests/kafka_streams.rs (and, mode eos, tests/tests/transactions_clients.rs)
// against Karst and against Apache Kafka with Java's source launcher:
//
//   java -cp <clients classpath> tests/java/StreamsCheck.java <bootstrap> <prefix> <state dir> <changelog|no-changelog|eos>
//
// Word count: lines from <prefix>-lines (3 partitions) are split into words, re-keyed
// by word (a repartition topic), counted in a state store (with a changelog topic, or
// with logging disabled) and the counts written to <prefix>-counts. The program
// produces 300 lines of known words, runs the topology until the latest count of every
// word in the output equals the expected count, and prints "OK ..." (or "FAIL ...",
// exit 1). Streams' own internal topics are created by Streams itself.
//
// changelog and no-changelog run at_least_once. eos runs exactly_once_v2 (transactions:
// one transactional producer per stream thread, offsets committed in its transactions)
// with the changelog, and reads the output read_committed: with the store's cache off
// every update is one output record, so each word's counts must be exactly 1, 2, ..., n
// in order (none twice, none missing), and the application's group must have committed
// offsets at the end of all 300 lines.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;
import org.apache.kafka.streams.state.KeyValueStore;

public class StreamsCheck {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) fail("usage: StreamsCheck <bootstrap> <prefix> <state dir> <changelog|no-changelog|eos>");
        String bootstrap = args[0], prefix = args[1], stateDir = args[2];
        boolean eos = args[3].equals("eos");
        boolean changelog = eos || args[3].equals("changelog");
        String lines = prefix + "-lines", counts = prefix + "-counts";
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(lines, 3, (short) 1), new NewTopic(counts, 3, (short) 1))).all().get(60, TimeUnit.SECONDS);
        }

        String[] words = {"karst", "kafka", "stream", "table", "topic"};
        Map<String, Long> expected = new TreeMap<>();
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (int i = 0; i < 300; i++) {
                StringBuilder line = new StringBuilder();
                for (int j = 0; j <= i % 4; j++) {
                    String w = words[(i + j * 3) % words.length];
                    line.append(w).append(' ');
                    expected.merge(w, 1L, Long::sum);
                }
                p.send(new ProducerRecord<>(lines, "line-" + i, line.toString().trim()));
            }
            p.flush();
        }

        StreamsBuilder builder = new StreamsBuilder();
        Materialized<String, Long, KeyValueStore<Bytes, byte[]>> store = Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("word-counts")
            .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long());
        if (!changelog) store = store.withLoggingDisabled();
        builder.stream(lines, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(v -> Arrays.asList(v.split(" ")))
            .groupBy((k, w) -> w, Grouped.with(Serdes.String(), Serdes.String()))
            .count(store)
            .toStream()
            .to(counts, Produced.with(Serdes.String(), Serdes.Long()));

        Properties sp = new Properties();
        sp.put(StreamsConfig.APPLICATION_ID_CONFIG, prefix + "-app");
        sp.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        sp.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        sp.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, eos ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        sp.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        sp.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        sp.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        KafkaStreams streams = new KafkaStreams(builder.build(), sp);
        CompletableFuture<Throwable> died = new CompletableFuture<>();
        streams.setUncaughtExceptionHandler(e -> {
            died.complete(e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, prefix + "-reader");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        if (eos) cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        Map<String, Long> latest = new TreeMap<>();
        Map<String, List<Long>> every = new TreeMap<>();
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(counts));
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (!latest.equals(expected)) {
                if (died.isDone()) fail("the Streams thread died: " + died.get());
                if (System.nanoTime() > deadline) fail("counts " + latest + ", expected " + expected + "; Streams state " + streams.state());
                for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
                    latest.put(r.key(), r.value());
                    every.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                }
            }
            if (eos) {
                // A duplicate (a count written twice) would come after the final counts.
                long extra = System.nanoTime() + Duration.ofSeconds(2).toNanos();
                while (System.nanoTime() < extra) {
                    for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
                        every.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                    }
                }
                for (Map.Entry<String, Long> e : expected.entrySet()) {
                    List<Long> want = new ArrayList<>();
                    for (long i = 1; i <= e.getValue(); i++) want.add(i);
                    List<Long> got = every.getOrDefault(e.getKey(), List.of());
                    if (!got.equals(want)) fail("exactly_once_v2: counts of " + e.getKey() + " read read_committed are " + got + ", want 1.." + e.getValue() + " once each");
                }
            }
        }
        String eosNote = "";
        if (eos) {
            try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
                Map<org.apache.kafka.common.TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(prefix + "-app").partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
                long total = committed.entrySet().stream().filter(e -> e.getKey().topic().equals(lines)).mapToLong(e -> e.getValue().offset()).sum();
                if (total != 300) fail("exactly_once_v2: the application's committed offsets on " + lines + " add up to " + total + ", want 300: " + committed);
                // Transactional writes leave a commit marker per transaction and partition:
                // the output's end offsets add up to more than its 750 records.
                Map<org.apache.kafka.common.TopicPartition, OffsetSpec> ends = new HashMap<>();
                for (int p = 0; p < 3; p++) ends.put(new org.apache.kafka.common.TopicPartition(counts, p), OffsetSpec.latest());
                long end = admin.listOffsets(ends).all().get(60, TimeUnit.SECONDS).values().stream().mapToLong(ListOffsetsResult.ListOffsetsResultInfo::offset).sum();
                long records = expected.values().stream().mapToLong(Long::longValue).sum();
                if (end <= records) fail("exactly_once_v2: " + counts + " ends at " + end + " for " + records + " records: no transaction markers");
            }
            long updates = expected.values().stream().mapToLong(Long::longValue).sum();
            eosNote = "; exactly_once_v2: each of the " + updates + " count updates read read_committed once, in order, offsets committed at the end of the 300 lines";
        }
        Set<String> internal;
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            internal = new TreeSet<>(admin.listTopics().names().get(60, TimeUnit.SECONDS));
        }
        internal.removeIf(t -> !t.startsWith(prefix + "-app-"));
        streams.close(Duration.ofSeconds(30));
        System.out.println("OK word counts of 300 lines through a repartition topic and a state store ("
            + (changelog ? "with" : "without") + " a changelog): " + expected + "; internal topics " + internal.size()
            + (internal.stream().anyMatch(t -> t.endsWith("-repartition")) ? " incl. a repartition topic" : "")
            + (internal.stream().anyMatch(t -> t.endsWith("-changelog")) ? " and a changelog topic" : "") + eosNote);
        System.exit(0);
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.out.flush();
        System.exit(1);
    }
}
