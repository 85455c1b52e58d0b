// The Java client (kafka-clients) against a broker: run by tests/tests/java_clients.rs
// against Karst and against Apache Kafka with Java's source launcher:
//
//   java -cp <clients classpath> tests/java/ClientCheck.java <mode> <bootstrap> <topic>
//
// Modes:
//   produce-consume  idempotent producer (the default), acks=all, keyed records to 3
//                    partitions; a consumer group member reads them all, commits, and a
//                    second consumer in the same group resumes after the commit
//   admin            AdminClient: topics, configs, partitions, offsets, records deletion,
//                    consumer-group offsets, cluster
//   group            two consumers, cooperative-sticky, one with a static
//                    group.instance.id: the second joining rebalances incrementally and
//                    every record is read once across the group
//
// Prints one line per step ("OK <step> ...") and exits 0, or prints "FAIL <why>" and
// exits 1. Every wait is bounded.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.stream.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.*;

public class ClientCheck {
    static final Duration TIMEOUT = Duration.ofSeconds(60);

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            fail("usage: ClientCheck <produce-consume|admin|group> <bootstrap> <topic>");
        }
        String mode = args[0], bootstrap = args[1], topic = args[2];
        try {
            switch (mode) {
                case "produce-consume" -> produceConsume(bootstrap, topic);
                case "admin" -> admin(bootstrap, topic);
                case "group" -> group(bootstrap, topic);
                default -> fail("unknown mode " + mode);
            }
        } catch (Exception e) {
            e.printStackTrace();
            fail(e.toString());
        }
        System.exit(0);
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.out.flush();
        System.exit(1);
    }

    static void check(boolean ok, String what) {
        if (!ok) fail(what);
    }

    static void ok(String line) {
        System.out.println("OK " + line);
        System.out.flush();
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String group, Map<String, String> extra) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    static void createTopic(Admin admin, String topic, int partitions) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(60, TimeUnit.SECONDS);
        // Metadata can lag CreateTopics by a moment, on any broker.
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (true) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                if (d.partitions().size() == partitions && d.partitions().stream().allMatch(pi -> pi.leader() != null)) return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
            }
            if (System.nanoTime() > deadline) fail("no leaders for " + topic);
            Thread.sleep(100);
        }
    }

    static List<String> send(String bootstrap, String topic, int n, String prefix) throws Exception {
        List<String> values = new ArrayList<>();
        try (KafkaProducer<String, String> producer = producer(bootstrap)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                String v = prefix + "-" + i;
                values.add(v);
                acks.add(producer.send(new ProducerRecord<>(topic, "key-" + (i % 7), v)));
            }
            for (Future<RecordMetadata> f : acks) {
                RecordMetadata m = f.get(60, TimeUnit.SECONDS);
                check(m.offset() >= 0, "no offset for a record");
            }
        }
        return values;
    }

    /** Polls until `want` records arrived (or fails); returns the values, in order of arrival. */
    static List<String> pollAll(KafkaConsumer<String, String> c, int want) {
        List<String> got = new ArrayList<>();
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (got.size() < want) {
            if (System.nanoTime() > deadline) fail("consumed " + got.size() + " of " + want);
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r.value());
        }
        return got;
    }

    static void produceConsume(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            createTopic(admin, topic, 3);
        }
        List<String> first = send(bootstrap, topic, 300, "first");
        ok("idempotent producer acks=all: 300 records acknowledged");
        String group = topic + "-group";
        try (KafkaConsumer<String, String> c = consumer(bootstrap, group, Map.of())) {
            c.subscribe(List.of(topic));
            List<String> got = pollAll(c, first.size());
            check(new HashSet<>(got).equals(new HashSet<>(first)) && got.size() == first.size(), "consumed " + got.size() + " records, not the 300 sent once each");
            // Per key (so per partition) the order is the send order.
            c.commitSync(TIMEOUT);
            ok("consumer group member read 300 and committed");
        }
        List<String> second = send(bootstrap, topic, 50, "second");
        try (KafkaConsumer<String, String> c = consumer(bootstrap, group, Map.of())) {
            c.subscribe(List.of(topic));
            List<String> got = pollAll(c, second.size());
            check(new HashSet<>(got).equals(new HashSet<>(second)), "a new member of the group resumed elsewhere than the commit: " + got.subList(0, Math.min(5, got.size())));
            ok("a new member resumed after the committed offsets: 50 new records");
        }
    }

    static void admin(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            createTopic(admin, topic, 2);
            check(admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic), "listTopics misses " + topic);
            ok("createTopics, listTopics, describeTopics");

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET))))
                .all().get(60, TimeUnit.SECONDS);
            Config cfg = admin.describeConfigs(List.of(res)).all().get(60, TimeUnit.SECONDS).get(res);
            ConfigEntry retention = cfg.get("retention.ms");
            check(retention != null && "3600000".equals(retention.value()) && retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "retention.ms after SET: " + retention);
            ok("incrementalAlterConfigs SET, describeConfigs (value and source)");

            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(60, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic).partitions().size() != 3) {
                if (System.nanoTime() > deadline) fail("createPartitions: still not 3 partitions");
                Thread.sleep(100);
            }
            ok("createPartitions 2 -> 3");

            send(bootstrap, topic, 30, "admin");
            TopicPartition p0 = new TopicPartition(topic, 0);
            Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
            List<TopicPartition> parts = List.of(p0, new TopicPartition(topic, 1), new TopicPartition(topic, 2));
            for (TopicPartition tp : parts) specs.put(tp, OffsetSpec.latest());
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> latest = admin.listOffsets(specs).all().get(60, TimeUnit.SECONDS);
            long total = latest.values().stream().mapToLong(ListOffsetsResult.ListOffsetsResultInfo::offset).sum();
            check(total == 30, "latest offsets sum to " + total + ", not 30");
            ok("listOffsets latest (30 records over 3 partitions)");

            long end0 = latest.get(p0).offset();
            if (end0 > 0) {
                DeletedRecords d = admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(end0))).lowWatermarks().get(p0).get(60, TimeUnit.SECONDS);
                check(d.lowWatermark() == end0, "deleteRecords low watermark " + d.lowWatermark() + ", not " + end0);
                long earliest = admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).all().get(60, TimeUnit.SECONDS).get(p0).offset();
                check(earliest == end0, "earliest after deleteRecords " + earliest + ", not " + end0);
            }
            ok("deleteRecords, listOffsets earliest");

            String group = topic + "-admin-group";
            admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(end0, "set by admin"))).all().get(60, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
            check(committed.get(p0) != null && committed.get(p0).offset() == end0 && "set by admin".equals(committed.get(p0).metadata()),
                "listConsumerGroupOffsets: " + committed);
            boolean listed = admin.listGroups().all().get(60, TimeUnit.SECONDS).stream().anyMatch(g -> g.groupId().equals(group));
            check(listed, "listGroups misses " + group);
            ConsumerGroupDescription desc = admin.describeConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS).get(group);
            check(desc.groupState() == GroupState.EMPTY, "describeConsumerGroups state " + desc.groupState());
            admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all().get(60, TimeUnit.SECONDS);
            admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS);
            ok("consumer group offsets: alter, list, listGroups, describe, delete offsets, delete group");

            DescribeClusterResult cluster = admin.describeCluster();
            check(!cluster.nodes().get(60, TimeUnit.SECONDS).isEmpty() && cluster.clusterId().get(60, TimeUnit.SECONDS) != null, "describeCluster");
            ok("describeCluster");

            admin.deleteTopics(List.of(topic)).all().get(60, TimeUnit.SECONDS);
            deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic)) {
                if (System.nanoTime() > deadline) fail("deleteTopics: still listed");
                Thread.sleep(100);
            }
            ok("deleteTopics");
        }
    }

    static void group(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            createTopic(admin, topic, 4);
        }
        List<String> sent = send(bootstrap, topic, 400, "g");
        String group = topic + "-coop";
        ConcurrentHashMap<String, Integer> seen = new ConcurrentHashMap<>();
        Map<String, String> coop = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        Map<String, String> staticMember = new HashMap<>(coop);
        staticMember.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "static-a");
        List<String> revokedByA = Collections.synchronizedList(new ArrayList<>());
        try (KafkaConsumer<String, String> a = consumer(bootstrap, group, staticMember);
             KafkaConsumer<String, String> b = consumer(bootstrap, group, coop)) {
            a.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    parts.forEach(p -> revokedByA.add(p.toString()));
                }
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {}
            });
            // A alone first: it takes all four partitions.
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (a.assignment().size() != 4) {
                if (System.nanoTime() > deadline) fail("the first member never got 4 partitions: " + a.assignment());
                a.poll(Duration.ofMillis(100)).forEach(r -> { seen.merge(r.value(), 1, Integer::sum); });
            }
            a.commitSync(TIMEOUT);
            ok("static member alone: 4 partitions");
            b.subscribe(List.of(topic));
            deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (a.assignment().size() + b.assignment().size() != 4 || b.assignment().isEmpty() || seen.size() < sent.size()) {
                if (System.nanoTime() > deadline) fail("after B joined: A " + a.assignment() + " B " + b.assignment() + ", " + seen.size() + " of " + sent.size() + " read");
                for (KafkaConsumer<String, String> c : List.of(a, b)) {
                    ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
                    rs.forEach(r -> seen.merge(r.value(), 1, Integer::sum));
                    if (!rs.isEmpty()) c.commitSync(TIMEOUT);
                }
            }
            check(a.assignment().size() == 2 && b.assignment().size() == 2, "cooperative split: A " + a.assignment() + " B " + b.assignment());
            // Incremental: A gave up only what B took, never all four.
            check(revokedByA.size() == 2, "A revoked " + revokedByA + " (cooperative rebalancing revokes only what moves)");
            check(seen.keySet().equals(new HashSet<>(sent)), "read " + seen.size() + " distinct of " + sent.size());
            ok("second member joined: 2 + 2 partitions, A revoked only the 2 that moved, all 400 read");
        }
    }
}
