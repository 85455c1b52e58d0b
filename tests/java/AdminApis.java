// Apache Kafka's own Java AdminClient (kafka-clients 4.4, the jars of the reference
// broker) against Karst: describeTopics (DescribeTopicPartitions, paged),
// describeLogDirs, electLeaders and describeProducers, as `kafka-topics --describe`,
// `kafka-log-dirs`, `kafka-leader-election` and `kafka-transactions describe-producers`
// call them. Run as a single-file program: java -cp <kafka classpath> AdminApis.java
// <bootstrap>. Prints OK last when every check held.

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringSerializer;

public class AdminApis {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = "java-admin-" + UUID.randomUUID().toString().substring(0, 8);
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(List.of(new NewTopic(topic, 5, (short) 1))).all().get(30, TimeUnit.SECONDS);
            int node = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).iterator().next().id();

            // describeTopics pages DescribeTopicPartitions with this limit per response.
            TopicDescription d = null;
            for (int attempt = 0; attempt < 100; attempt++) {
                d = admin.describeTopics(List.of(topic), new DescribeTopicsOptions().partitionSizeLimitPerResponse(2))
                    .allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
                if (d.partitions().stream().allMatch(p -> p.leader() != null)) {
                    break;
                }
                Thread.sleep(100);
            }
            check(d.partitions().size() == 5, "describeTopics over pages of 2 partitions lists all 5: " + d.partitions());
            for (int i = 0; i < 5; i++) {
                TopicPartitionInfo p = d.partitions().get(i);
                check(p.partition() == i && p.leader().id() == node && p.replicas().size() == 1 && p.isr().size() == 1,
                    "partition " + i + " led by node " + node + " with itself as replica and ISR");
                check(p.elr().isEmpty() && p.lastKnownElr().isEmpty(), "partition " + i + " has no eligible leader replicas");
            }
            check(!d.isInternal() && d.topicId() != null, "topic id and not internal");
            try {
                admin.describeTopics(List.of(topic + "-missing")).allTopicNames().get(30, TimeUnit.SECONDS);
                check(false, "describeTopics of a missing topic fails");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof UnknownTopicOrPartitionException, "a missing topic: " + e.getCause());
            }

            // An idempotent producer's two records in partition 1.
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("enable.idempotence", "true");
            pp.put("acks", "all");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                producer.send(new ProducerRecord<>(topic, 1, "k", "one")).get(30, TimeUnit.SECONDS);
                producer.send(new ProducerRecord<>(topic, 1, "k", "two")).get(30, TimeUnit.SECONDS);
            }
            TopicPartition p1 = new TopicPartition(topic, 1);
            PartitionProducerState state = admin.describeProducers(List.of(p1)).partitionResult(p1).get(30, TimeUnit.SECONDS);
            List<ProducerState> active = state.activeProducers();
            check(active.size() == 1, "describeProducers: one producer in partition 1: " + active);
            ProducerState s = active.get(0);
            check(s.producerId() >= 0 && s.producerEpoch() >= 0 && s.lastSequence() == 1 && s.lastTimestamp() > 0,
                "its id, epoch, last sequence 1 and timestamp: " + s);
            check(s.coordinatorEpoch().isEmpty() && s.currentTransactionStartOffset().isEmpty(), "no transaction: " + s);
            TopicPartition p0 = new TopicPartition(topic, 0);
            check(admin.describeProducers(List.of(p0)).partitionResult(p0).get(30, TimeUnit.SECONDS).activeProducers().isEmpty(),
                "describeProducers: none in partition 0");

            // describeLogDirs: one directory, the topic's partitions with their sizes.
            Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(node)).descriptions().get(node).get(30, TimeUnit.SECONDS);
            check(dirs.size() == 1, "describeLogDirs: one log directory: " + dirs.keySet());
            LogDirDescription dir = dirs.values().iterator().next();
            check(dir.error() == null, "the directory is online");
            check(dir.totalBytes().orElse(-1) > 0 && dir.usableBytes().orElse(-1) >= 0, "its file system's total and usable bytes");
            for (int i = 0; i < 5; i++) {
                ReplicaInfo r = dir.replicaInfos().get(new TopicPartition(topic, i));
                check(r != null && r.offsetLag() == 0 && !r.isFuture(), "partition " + i + " is in it");
                check((i == 1) == (r.size() > 0), "partition " + i + "'s size " + r.size() + " (only partition 1 has records)");
            }

            // electLeaders: one broker leads everything already.
            Map<TopicPartition, Optional<Throwable>> elected =
                admin.electLeaders(ElectionType.PREFERRED, Set.of(p0, p1)).partitions().get(30, TimeUnit.SECONDS);
            check(elected.size() == 2 && elected.values().stream().allMatch(e -> e.isPresent() && e.get() instanceof ElectionNotNeededException),
                "preferred election: not needed: " + elected);
            Map<TopicPartition, Optional<Throwable>> unclean =
                admin.electLeaders(ElectionType.UNCLEAN, Set.of(p0)).partitions().get(30, TimeUnit.SECONDS);
            check(unclean.get(p0).isPresent() && unclean.get(p0).get() instanceof ElectionNotNeededException,
                "unclean election of a led partition: not needed: " + unclean);
            Map<TopicPartition, Optional<Throwable>> all = admin.electLeaders(ElectionType.PREFERRED, null).partitions().get(30, TimeUnit.SECONDS);
            check(all.isEmpty(), "preferred election of every partition: nothing to report: " + all);
        }
        System.out.println("OK");
    }
}
