// Transactions with the Java client (kafka-clients) against a broker: run by
// tests/tests/transactions_clients.rs against Karst and against Apache Kafka with Java's
// source launcher:
//
//   java -cp <clients classpath> tests/java/TxnCheck.java <bootstrap> <topic>
//
// Steps (each prints "OK <step>"):
//   1. a transactional producer commits 50 records, aborts 50 and commits 50 more in a
//      1-partition topic; listOffsets latest is 153 (three markers) read_uncommitted and
//      read_committed; a read_committed consumer reads exactly the 100 committed
//      records in order (at offsets 0..49 and 102..151), a read_uncommitted one all 150
//   2. an open transaction (records sent and flushed, not committed): the end offset
//      moves to 203, the last stable offset stays at 153, a read_committed consumer gets
//      nothing until the commit, then exactly its 50 records
//   3. consume-transform-produce: a read_committed group member reads 200 records of a
//      2-partition input, writes them upper-cased to an output topic and commits its
//      offsets with sendOffsetsToTransaction(offsets, consumer.groupMetadata()); its
//      first transaction is aborted (the group's offsets stay uncommitted, the consumer
//      seeks back) and redone; the output read read_committed holds every input once,
//      the group's committed offsets equal the input's end offsets
//   4. zombie fencing: producer A begins a transaction and sends a record; producer B
//      with the same transactional.id calls initTransactions (aborting A's transaction);
//      A's next send or commit fails with ProducerFencedException (or
//      InvalidProducerEpochException); B commits a transaction; read_committed sees B's
//      record and not A's
//
// Prints "FAIL <why>" and exits 1 on the first check that does not hold. Every wait is
// bounded.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.stream.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.*;

public class TxnCheck {
    static final Duration TIMEOUT = Duration.ofSeconds(60);
    static final int N = 50;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) fail("usage: TxnCheck <bootstrap> <topic>");
        String bootstrap = args[0], topic = args[1];
        try (Admin admin = admin(bootstrap)) {
            commitAbort(bootstrap, admin, topic);
            consumeTransformProduce(bootstrap, admin, topic);
            fencing(bootstrap, admin, topic + "-fence");
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

    static KafkaProducer<String, String> producer(String bootstrap, String transactionalId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        if (transactionalId != null) p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String group, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (group != null) p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "64");
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

    static List<String> values(String prefix, int n) {
        return IntStream.range(0, n).mapToObj(i -> prefix + "-" + i).collect(Collectors.toList());
    }

    /** Sends `values` in one transaction and commits or aborts it. */
    static void inTxn(KafkaProducer<String, String> p, String topic, List<String> values, boolean commit) throws Exception {
        p.beginTransaction();
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (String v : values) acks.add(p.send(new ProducerRecord<>(topic, v)));
        for (Future<RecordMetadata> f : acks) f.get(60, TimeUnit.SECONDS);
        if (commit) p.commitTransaction();
        else p.abortTransaction();
    }

    /** listOffsets(latest) of topic/partition with the isolation level. */
    static long latest(Admin admin, TopicPartition tp, IsolationLevel iso) throws Exception {
        return admin.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(iso)).all().get(60, TimeUnit.SECONDS).get(tp).offset();
    }

    /** Reads tp from `from` with the isolation level until `want` records came, then polls 2 s more for extras. */
    static List<ConsumerRecord<String, String>> read(String bootstrap, TopicPartition tp, long from, String isolation, int want) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(bootstrap, null, isolation)) {
            c.assign(List.of(tp));
            c.seek(tp, from);
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (got.size() < want) {
                if (System.nanoTime() > deadline) fail(isolation + " consumer: read " + got.size() + " of " + want);
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r);
            }
            long extra = System.nanoTime() + Duration.ofSeconds(2).toNanos();
            while (System.nanoTime() < extra) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r);
            }
        }
        return got;
    }

    static List<String> valuesOf(List<ConsumerRecord<String, String>> rs) {
        return rs.stream().map(ConsumerRecord::value).collect(Collectors.toList());
    }

    static void commitAbort(String bootstrap, Admin admin, String topic) throws Exception {
        createTopic(admin, topic, 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        List<String> first = values("committed1", N), aborted = values("aborted", N), second = values("committed2", N);
        try (KafkaProducer<String, String> p = producer(bootstrap, topic + "-txn")) {
            p.initTransactions();
            inTxn(p, topic, first, true);
            inTxn(p, topic, aborted, false);
            inTxn(p, topic, second, true);
            ok("transactional producer: " + N + " committed, " + N + " aborted, " + N + " committed");

            // A coordinator may answer EndTxn before the markers are written: awaited.
            long end, lso;
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (true) {
                end = latest(admin, tp, IsolationLevel.READ_UNCOMMITTED);
                lso = latest(admin, tp, IsolationLevel.READ_COMMITTED);
                if ((end == 3 * N + 3 && lso == 3 * N + 3) || System.nanoTime() > deadline) break;
                Thread.sleep(50);
            }
            check(end == 3 * N + 3 && lso == 3 * N + 3, "end offset " + end + ", last stable offset " + lso + ", want both " + (3 * N + 3));
            ok("listOffsets latest: " + end + " read_uncommitted and read_committed (three markers)");

            List<String> want = new ArrayList<>(first);
            want.addAll(second);
            List<ConsumerRecord<String, String>> rc = read(bootstrap, tp, 0, "read_committed", want.size());
            check(valuesOf(rc).equals(want), "read_committed consumer read " + rc.size() + " records, not the " + want.size() + " committed in order: " + valuesOf(rc));
            check(rc.get(N - 1).offset() == N - 1 && rc.get(N).offset() == 2 * N + 2,
                "committed records at offsets " + rc.get(N - 1).offset() + " and " + rc.get(N).offset() + ", want " + (N - 1) + " and " + (2 * N + 2));
            ok("read_committed consumer: exactly the " + want.size() + " committed records in order, none aborted");
            List<String> all = new ArrayList<>(first);
            all.addAll(aborted);
            all.addAll(second);
            List<ConsumerRecord<String, String>> ru = read(bootstrap, tp, 0, "read_uncommitted", all.size());
            check(valuesOf(ru).equals(all), "read_uncommitted consumer read " + ru.size() + " records, not all " + all.size() + " in order");
            ok("read_uncommitted consumer: all " + all.size() + ", the aborted ones too, no control records");

            // An open transaction holds the last stable offset back.
            List<String> open = values("open", N);
            p.beginTransaction();
            for (String v : open) p.send(new ProducerRecord<>(topic, v));
            p.flush();
            end = latest(admin, tp, IsolationLevel.READ_UNCOMMITTED);
            lso = latest(admin, tp, IsolationLevel.READ_COMMITTED);
            check(end == 4 * N + 3 && lso == 3 * N + 3, "open transaction: end offset " + end + " (want " + (4 * N + 3) + "), last stable offset " + lso + " (want " + (3 * N + 3) + ")");
            try (KafkaConsumer<String, String> c = consumer(bootstrap, null, "read_committed")) {
                c.assign(List.of(tp));
                c.seek(tp, 3 * N + 3);
                int early = c.poll(Duration.ofSeconds(2)).count();
                check(early == 0, "read_committed consumer got " + early + " records of an open transaction");
                p.commitTransaction();
                List<String> got = new ArrayList<>();
                deadline = System.nanoTime() + TIMEOUT.toNanos();
                while (got.size() < N) {
                    if (System.nanoTime() > deadline) fail("after the commit: read " + got.size() + " of " + N);
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r.value());
                }
                check(got.equals(open), "after the commit the read_committed consumer read " + got);
            }
            ok("open transaction: end offset " + (4 * N + 3) + ", last stable offset held at " + (3 * N + 3) + ", nothing read_committed until the commit, then its " + N);
        }
    }

    static void consumeTransformProduce(String bootstrap, Admin admin, String topic) throws Exception {
        final int m = 200;
        String in = topic + "-in", out = topic + "-out", group = topic + "-etl";
        createTopic(admin, in, 2);
        createTopic(admin, out, 1);
        List<String> inputs = new ArrayList<>();
        try (KafkaProducer<String, String> p = producer(bootstrap, null)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < m; i++) {
                String v = "in-" + i;
                inputs.add(v);
                acks.add(p.send(new ProducerRecord<>(in, "key-" + (i % 7), v)));
            }
            for (Future<RecordMetadata> f : acks) f.get(60, TimeUnit.SECONDS);
        }
        int done = 0, txns = 0, abortedRecords = 0;
        boolean abortedOnce = false;
        try (KafkaProducer<String, String> p = producer(bootstrap, topic + "-etl-txn");
             KafkaConsumer<String, String> c = consumer(bootstrap, group, "read_committed")) {
            p.initTransactions();
            c.subscribe(List.of(in));
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (done < m) {
                if (System.nanoTime() > deadline) fail("transform: " + done + " of " + m + " records in committed transactions");
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
                if (rs.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                Map<TopicPartition, Long> firsts = new HashMap<>();
                for (ConsumerRecord<String, String> r : rs) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    firsts.putIfAbsent(tp, r.offset());
                    p.send(new ProducerRecord<>(out, r.key(), r.value().toUpperCase(Locale.ROOT)));
                    next.put(tp, new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(next, c.groupMetadata());
                if (!abortedOnce) {
                    // The first transaction is aborted: its records and its offsets vanish,
                    // and the consumer goes back to redo them. Flushed first: an abort drops
                    // records still waiting in the client, which would never reach the log.
                    p.flush();
                    p.abortTransaction();
                    abortedOnce = true;
                    abortedRecords = rs.count();
                    Map<TopicPartition, OffsetAndMetadata> committed = c.committed(next.keySet(), TIMEOUT);
                    check(committed.values().stream().allMatch(Objects::isNull), "offsets of an aborted transaction committed: " + committed);
                    firsts.forEach(c::seek);
                    ok("an aborted transaction's offsets are not committed (" + rs.count() + " records to redo)");
                    continue;
                }
                p.commitTransaction();
                done += rs.count();
                txns++;
            }
        }
        check(done == m, "transform: " + done + " records, want " + m);
        ok("consume-transform-produce: " + m + " records in " + txns + " committed transactions with sendOffsetsToTransaction(groupMetadata)");

        List<String> want = inputs.stream().map(v -> v.toUpperCase(Locale.ROOT)).sorted().collect(Collectors.toList());
        List<String> got = valuesOf(read(bootstrap, new TopicPartition(out, 0), 0, "read_committed", m));
        Collections.sort(got);
        check(got.equals(want), "output: " + got.size() + " records, not each of the " + m + " transformed inputs once");
        List<ConsumerRecord<String, String>> raw = read(bootstrap, new TopicPartition(out, 0), 0, "read_uncommitted", m + abortedRecords);
        check(raw.size() == m + abortedRecords, "read_uncommitted output has " + raw.size() + " records, want " + m + " + the " + abortedRecords + " aborted");
        ok("output topic: every input once read_committed; read_uncommitted also sees the " + (raw.size() - m) + " aborted");

        // Offsets committed in a transaction become visible once its markers are written:
        // requireStable makes the broker say so (UNSTABLE_OFFSET_COMMIT, retried) until then.
        Map<TopicPartition, OffsetAndMetadata> committed = admin
            .listConsumerGroupOffsets(Map.of(group, new ListConsumerGroupOffsetsSpec()), new ListConsumerGroupOffsetsOptions().requireStable(true))
            .partitionsToOffsetAndMetadata(group).get(60, TimeUnit.SECONDS);
        long total = 0;
        for (int part = 0; part < 2; part++) {
            TopicPartition tp = new TopicPartition(in, part);
            long end = latest(admin, tp, IsolationLevel.READ_UNCOMMITTED);
            OffsetAndMetadata o = committed.get(tp);
            check(o != null && o.offset() == end, "group " + group + ", " + tp + ": committed " + o + ", log end " + end);
            total += end;
        }
        check(total == m, "input end offsets add up to " + total + ", want " + m);
        ok("the group's offsets committed in the transactions equal the input's end offsets");
    }

    static void fencing(String bootstrap, Admin admin, String topic) throws Exception {
        createTopic(admin, topic, 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String id = topic + "-txn";
        KafkaProducer<String, String> a = producer(bootstrap, id);
        a.initTransactions();
        a.beginTransaction();
        a.send(new ProducerRecord<>(topic, "zombie-1")).get(60, TimeUnit.SECONDS);
        try (KafkaProducer<String, String> b = producer(bootstrap, id)) {
            b.initTransactions();
            ok("a second producer with the same transactional.id initialised while the first had a transaction open");
            Exception fenced = null;
            try {
                a.send(new ProducerRecord<>(topic, "zombie-2")).get(60, TimeUnit.SECONDS);
                a.commitTransaction();
            } catch (ExecutionException e) {
                fenced = e.getCause() instanceof Exception ex ? ex : e;
            } catch (KafkaException e) {
                fenced = e;
            }
            check(fenced != null, "the fenced producer sent and committed without an error");
            Throwable cause = fenced;
            while (!(cause instanceof ProducerFencedException || cause instanceof InvalidProducerEpochException) && cause.getCause() != null) cause = cause.getCause();
            check(cause instanceof ProducerFencedException || cause instanceof InvalidProducerEpochException,
                "the fenced producer failed with " + fenced + ", not ProducerFencedException or InvalidProducerEpochException");
            ok("the first producer's next send/commit failed: " + cause.getClass().getSimpleName());
            a.close(Duration.ZERO);
            inTxn(b, topic, List.of("successor"), true);
        }
        List<ConsumerRecord<String, String>> rc = read(bootstrap, tp, 0, "read_committed", 1);
        check(valuesOf(rc).equals(List.of("successor")), "read_committed after fencing: " + valuesOf(rc) + ", want only the successor's record");
        ok("read_committed sees the successor's committed record and none of the fenced producer's");
    }
}
