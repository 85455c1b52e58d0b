// The Java KafkaShareConsumer (KIP-932) against a broker: run by tests/tests/share_groups.rs
// with Java's source launcher:
//
//   java -cp <clients classpath> tests/java/ShareCheck.java <bootstrap> <topic> <group>
//
// Creates <topic> (2 partitions), sets the share group's share.auto.offset.reset to
// earliest (IncrementalAlterConfigs on its GROUP resource), produces 40 records, reads
// them with a KafkaShareConsumer in explicit acknowledgement mode, accepting each one and
// committing the acknowledgements synchronously (the Admin client describes the group
// meanwhile); then a second share consumer of the group gets nothing (every record was
// accepted), and the Admin client lists the group as a share group, lists its start
// offsets (past every record) and deletes it.
//
// Prints one line per step ("OK <step> ...") and exits 0, or prints "FAIL <why>" and
// exits 1. Every wait is bounded.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.*;

public class ShareCheck {
    static final int RECORDS = 40;

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            fail("usage: ShareCheck <bootstrap> <topic> <group>");
        }
        String bootstrap = args[0], topic = args[1], group = args[2];
        try {
            run(bootstrap, topic, group);
        } catch (Exception e) {
            e.printStackTrace(System.out);
            fail(e.toString());
        }
        System.exit(0);
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.exit(1);
    }

    static void run(String bootstrap, String topic, String group) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(60, TimeUnit.SECONDS);
            ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
            AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get(60, TimeUnit.SECONDS);
            System.out.println("OK group config share.auto.offset.reset=earliest");
        }

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (Producer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < RECORDS; i++) {
                producer.send(new ProducerRecord<>(topic, i % 2, "k" + i, "v" + i)).get(60, TimeUnit.SECONDS);
            }
        }
        System.out.println("OK produced " + RECORDS);

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put("share.acknowledgement.mode", "explicit");
        Set<String> seen = new TreeSet<>();
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(cp)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            while (seen.size() < RECORDS) {
                if (System.nanoTime() > deadline) {
                    fail("read " + seen.size() + " of " + RECORDS + " records: " + seen);
                }
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : records) {
                    if (!seen.add(r.value())) {
                        fail("record " + r.value() + " delivered twice (offset " + r.offset() + ")");
                    }
                    consumer.acknowledge(r, AcknowledgeType.ACCEPT);
                }
                if (!records.isEmpty()) {
                    Map<TopicIdPartition, Optional<KafkaException>> result = consumer.commitSync(Duration.ofSeconds(30));
                    for (Map.Entry<TopicIdPartition, Optional<KafkaException>> e : result.entrySet()) {
                        if (e.getValue().isPresent()) {
                            fail("acknowledging " + e.getKey() + ": " + e.getValue().get());
                        }
                    }
                }
            }
            try (Admin admin = Admin.create(ap)) {
                ShareGroupDescription d = admin.describeShareGroups(List.of(group)).all().get(60, TimeUnit.SECONDS).get(group);
                if (d.groupState() != GroupState.STABLE || d.members().size() != 1) {
                    fail("describeShareGroups while consuming: " + d);
                }
                Set<TopicPartition> assigned = d.members().iterator().next().assignment().topicPartitions();
                if (!assigned.equals(Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)))) {
                    fail("assignment of the only member: " + assigned);
                }
                System.out.println("OK described: " + d.groupState() + ", epoch " + d.groupEpoch() + ", assignment " + assigned);
            }
        }
        System.out.println("OK consumed and accepted " + seen.size());

        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(cp)) {
            consumer.subscribe(List.of(topic));
            long until = System.nanoTime() + Duration.ofSeconds(4).toNanos();
            while (System.nanoTime() < until) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (!records.isEmpty()) {
                    fail("accepted records delivered again: " + records.count());
                }
            }
        }
        System.out.println("OK nothing delivered again");

        try (Admin admin = Admin.create(ap)) {
            Collection<GroupListing> groups = admin.listGroups(ListGroupsOptions.forShareGroups()).all().get(60, TimeUnit.SECONDS);
            boolean listed = groups.stream().anyMatch(g -> g.groupId().equals(group) && g.type().equals(Optional.of(GroupType.SHARE)));
            if (!listed) {
                fail("share group " + group + " not listed: " + groups);
            }
        }
        System.out.println("OK listed as a share group");

        try (Admin admin = Admin.create(ap)) {
            Map<TopicPartition, SharePartitionOffsetInfo> offsets =
                admin.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec())).partitionsToOffsetInfo(group).get(60, TimeUnit.SECONDS);
            for (int p = 0; p < 2; p++) {
                SharePartitionOffsetInfo info = offsets.get(new TopicPartition(topic, p));
                if (info == null || info.startOffset() != RECORDS / 2) {
                    fail("start offset of partition " + p + ": " + offsets);
                }
            }
            System.out.println("OK start offsets " + offsets);
            admin.deleteShareGroups(List.of(group)).all().get(60, TimeUnit.SECONDS);
            Collection<GroupListing> groups = admin.listGroups(ListGroupsOptions.forShareGroups()).all().get(60, TimeUnit.SECONDS);
            if (groups.stream().anyMatch(g -> g.groupId().equals(group))) {
                fail("deleted share group still listed: " + groups);
            }
        }
        System.out.println("OK deleted");
    }
}
