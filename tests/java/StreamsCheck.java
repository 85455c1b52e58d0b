// A Kafka Streams application (kafka-streams 4.4, at_least_once) against a broker: run
// by tests/tests/kafka_streams.rs against Karst and against Apache Kafka with Java's
// source launcher:
//
//   java -cp <clients classpath> tests/java/StreamsCheck.java <bootstrap> <prefix> <state dir> <changelog|no-changelog>
//
// Word count: lines from <prefix>-lines (3 partitions) are split into words, re-keyed
// by word (a repartition topic), counted in a state store (with a changelog topic, or
// with logging disabled) and the counts written to <prefix>-counts. The program
// produces 300 lines of known words, runs the topology until the latest count of every
// word in the output equals the expected count, and prints "OK ..." (or "FAIL ...",
// exit 1). Streams' own internal topics are created by Streams itself.

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
        if (args.length != 4) fail("usage: StreamsCheck <bootstrap> <prefix> <state dir> <changelog|no-changelog>");
        String bootstrap = args[0], prefix = args[1], stateDir = args[2];
        boolean changelog = args[3].equals("changelog");
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
        sp.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
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
        Map<String, Long> latest = new TreeMap<>();
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(counts));
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (!latest.equals(expected)) {
                if (died.isDone()) fail("the Streams thread died: " + died.get());
                if (System.nanoTime() > deadline) fail("counts " + latest + ", expected " + expected + "; Streams state " + streams.state());
                for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) latest.put(r.key(), r.value());
            }
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
            + (internal.stream().anyMatch(t -> t.endsWith("-changelog")) ? " and a changelog topic" : ""));
        System.exit(0);
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.out.flush();
        System.exit(1);
    }
}
