// Apache Kafka's Java AdminClient (kafka-clients 4.4) listOffsets with every OffsetSpec:
// earliest, latest, forTimestamp, maxTimestamp (ListOffsets v7+, KIP-734),
// earliestLocal (v8+), latestTiered (v9+) and earliestPendingUpload (v11+), on a topic
// of known records: partition 0 holds five records whose timestamps are out of order
// (the largest is not the last), partition 1 none. Checks the offsets, then prints one
// ANSWERS line (offset, timestamp and leader epoch of every answer) that the test
// compares with Apache Kafka's. Run as a single-file program:
// java -cp <kafka clients classpath> ListOffsetsCheck.java <bootstrap>. Prints OK last.

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

public class ListOffsetsCheck {
    static final long T0 = 1_700_000_000_000L;
    // Offsets 0..4: the largest timestamp is at offset 2, not the last.
    static final long[] STAMPS = {T0, T0 + 1000, T0 + 3000, T0 + 2000, T0 + 2500};

    record Spec(String name, OffsetSpec spec, long partition0, long partition1) {}

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = "java-list-offsets-" + UUID.randomUUID().toString().substring(0, 8);
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            for (int attempt = 0; attempt < 300; attempt++) {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
                if (d.partitions().size() == 2 && d.partitions().stream().allMatch(p -> p.leader() != null)) {
                    break;
                }
                Thread.sleep(100);
            }

            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("acks", "all");
            pp.put("linger.ms", "100");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
                for (int i = 0; i < STAMPS.length; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, 0, STAMPS[i], null, "m" + i)));
                }
                for (var f : sent) {
                    f.get(60, TimeUnit.SECONDS);
                }
            }

            List<Spec> specs = List.of(
                new Spec("earliest", OffsetSpec.earliest(), 0, 0),
                new Spec("latest", OffsetSpec.latest(), 5, 0),
                new Spec("maxTimestamp", OffsetSpec.maxTimestamp(), 2, -1),
                new Spec("forTimestamp(T0 + 500)", OffsetSpec.forTimestamp(T0 + 500), 1, -1),
                new Spec("forTimestamp(T0 + 2500)", OffsetSpec.forTimestamp(T0 + 2500), 2, -1),
                new Spec("forTimestamp(before the first)", OffsetSpec.forTimestamp(T0 - 1), 0, -1),
                new Spec("forTimestamp(after the largest)", OffsetSpec.forTimestamp(T0 + 3001), -1, -1),
                new Spec("earliestLocal", OffsetSpec.earliestLocal(), 0, 0),
                new Spec("latestTiered", OffsetSpec.latestTiered(), -1, -1),
                new Spec("earliestPendingUpload", OffsetSpec.earliestPendingUpload(), -1, -1));
            Map<String, String> answers = new LinkedHashMap<>();
            for (Spec s : specs) {
                TopicPartition p0 = new TopicPartition(topic, 0);
                TopicPartition p1 = new TopicPartition(topic, 1);
                Map<TopicPartition, ListOffsetsResultInfo> got =
                    admin.listOffsets(Map.of(p0, s.spec(), p1, s.spec())).all().get(60, TimeUnit.SECONDS);
                for (var e : List.of(Map.entry(p0, s.partition0()), Map.entry(p1, s.partition1()))) {
                    ListOffsetsResultInfo info = got.get(e.getKey());
                    String key = s.name() + ", partition " + e.getKey().partition();
                    String value = "[" + info.offset() + ", " + info.timestamp() + ", " + info.leaderEpoch().map(String::valueOf).orElse("null") + "]";
                    answers.put(key, value);
                    System.out.println(key + ": " + value);
                    check(info.offset() == e.getValue(), key + ": offset " + info.offset() + ", expected " + e.getValue());
                }
            }
            StringBuilder line = new StringBuilder("ANSWERS {");
            answers.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e ->
                line.append(line.length() > 9 ? ", " : "").append('"').append(e.getKey()).append("\": ").append(e.getValue()));
            System.out.println(line.append('}'));
        }
        System.out.println("OK");
    }
}
