// Transactional produce throughput for benches/transactions.sh: one transactional
// producer (the Java client 4.4) writing to partition 0 of a new 1-partition topic
// (replication factor 1) in transactions of a fixed number of records: begin, send N
// records of S bytes, commitTransaction, repeat. acks=all (the transactional client's
// only choice), the client's defaults otherwise.
//
//   java -cp <clients classpath> TxnBench.java <bootstrap> <topic> <records per txn>
//        <transactions> <warm-up transactions> <record bytes> <max seconds>
//
// The first <warm-up> transactions are not measured. Then <transactions> transactions
// (fewer if <max seconds> run out first: the line says how many) are timed: the rate is
// records over the time from the first measured beginTransaction to the last
// commitTransaction's return; the commit latency is the time commitTransaction takes
// (it sends what the producer still holds, waits for the acknowledgements, then ends
// the transaction with EndTxn), in an HdrHistogram. Afterwards the topic's last stable
// offset (ListOffsets latest, read_committed) must equal every record sent plus one
// commit marker per transaction, or the run fails. Prints one line:
//
//   TXNBENCH txns=.. records=.. seconds=.. records_per_s=.. txns_per_s=..
//            commit_p50_ms=.. commit_p99_ms=.. commit_p999_ms=.. commit_max_ms=.. lso=..
//            features=..
//
// and "FAIL <why>" (exit 1) on any error. Every wait is bounded.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;

import org.HdrHistogram.Histogram;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class TxnBench {
    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            fail("usage: TxnBench <bootstrap> <topic> <records per txn> <transactions> <warm-up> <record bytes> <max seconds>");
        }
        String bootstrap = args[0], topic = args[1];
        int perTxn = Integer.parseInt(args[2]);
        int txns = Integer.parseInt(args[3]);
        int warmup = Integer.parseInt(args[4]);
        int bytes = Integer.parseInt(args[5]);
        long maxNanos = TimeUnit.SECONDS.toNanos(Long.parseLong(args[6]));
        try {
            run(bootstrap, topic, perTxn, txns, warmup, bytes, maxNanos);
        } catch (Exception e) {
            e.printStackTrace();
            fail(e.toString());
        }
        System.exit(0);
    }

    static void run(String bootstrap, String topic, int perTxn, int txns, int warmup, int bytes, long maxNanos)
            throws Exception {
        Properties a = new Properties();
        a.put("bootstrap.servers", bootstrap);
        a.put("default.api.timeout.ms", "60000");
        try (Admin admin = Admin.create(a)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(60, TimeUnit.SECONDS);
            String features;
            try {
                FeatureMetadata fm = admin.describeFeatures().featureMetadata().get(60, TimeUnit.SECONDS);
                StringBuilder sb = new StringBuilder();
                new TreeMap<>(fm.finalizedFeatures()).forEach((k, v) ->
                        sb.append(sb.length() == 0 ? "" : ",").append(k).append(':').append(v.maxVersionLevel()));
                features = sb.length() == 0 ? "none" : sb.toString();
            } catch (Exception e) {
                features = "unknown";
            }

            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("transactional.id", "txnbench-" + topic);
            p.put("acks", "all");
            p.put("max.block.ms", "60000");
            p.put("delivery.timeout.ms", "120000");
            TopicPartition tp = new TopicPartition(topic, 0);
            byte[] value = new byte[bytes];
            Arrays.fill(value, (byte) 'x');
            Histogram commits = new Histogram(TimeUnit.SECONDS.toNanos(60), 3);
            long measured = 0, start, end;
            try (KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
                producer.initTransactions();
                for (int t = 0; t < warmup; t++) {
                    transaction(producer, topic, perTxn, value);
                }
                start = System.nanoTime();
                end = start;
                while (measured < txns && end - start < maxNanos) {
                    long c = transaction(producer, topic, perTxn, value);
                    end = System.nanoTime();
                    commits.recordValue(Math.min(c, commits.getHighestTrackableValue()));
                    measured++;
                }
            }

            long sent = (warmup + measured) * (perTxn + 1L);
            long lso = admin.listOffsets(Map.of(tp, OffsetSpec.latest()),
                    new ListOffsetsOptions(IsolationLevel.READ_COMMITTED)).partitionResult(tp).get(60, TimeUnit.SECONDS).offset();
            if (lso != sent) {
                fail("last stable offset " + lso + ", expected " + sent + " (" + (warmup + measured) + " transactions of "
                        + perTxn + " records and a marker)");
            }
            double secs = (end - start) / 1e9;
            System.out.printf(Locale.ROOT,
                    "TXNBENCH txns=%d records=%d seconds=%.3f records_per_s=%.1f txns_per_s=%.1f commit_p50_ms=%.3f "
                            + "commit_p99_ms=%.3f commit_p999_ms=%.3f commit_max_ms=%.3f lso=%d features=%s%n",
                    measured, measured * perTxn, secs, measured * perTxn / secs, measured / secs,
                    commits.getValueAtPercentile(50) / 1e6, commits.getValueAtPercentile(99) / 1e6,
                    commits.getValueAtPercentile(99.9) / 1e6, commits.getMaxValue() / 1e6, lso, features);
        }
    }

    /** One transaction; returns the nanoseconds commitTransaction took. */
    static long transaction(KafkaProducer<byte[], byte[]> producer, String topic, int n, byte[] value) {
        producer.beginTransaction();
        for (int i = 0; i < n; i++) {
            producer.send(new ProducerRecord<>(topic, 0, null, value));
        }
        long t0 = System.nanoTime();
        producer.commitTransaction();
        return System.nanoTime() - t0;
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.out.flush();
        System.exit(1);
    }
}
