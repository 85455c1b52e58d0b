// A Java consumer (kafka-clients) on a topic of many partitions, where only a few get
// records: run by tests/tests/fetch_sessions.rs (and benches/fetch-sessions.sh) with
// Java's source launcher:
//
//   java -cp <clients classpath> tests/java/FetchSessionsCheck.java <bootstrap> <topic> <partitions> <already> <rounds>
//
// Assigns every partition of <topic> (no group), reads from the beginning the <already>
// records the caller produced, then <rounds> times produces one record (acks=all) to one
// of a few partitions and reads it back. The Java consumer fetches with KIP-227 fetch
// sessions: one full fetch, then incremental ones naming only what changed.
//
// Prints "OK <step> ..." lines and, last, "BENCH records=<n> cpu_ms=<process CPU>
// wall_ms=<n>" for the whole read, and exits 0; or prints "FAIL <why>" and exits 1.
// Every wait is bounded.

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.*;

import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class FetchSessionsCheck {
    static final long TIMEOUT_MS = 120_000;

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            fail("usage: FetchSessionsCheck <bootstrap> <topic> <partitions> <already> <rounds>");
        }
        String bootstrap = args[0], topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        long already = Long.parseLong(args[3]);
        int rounds = Integer.parseInt(args[4]);
        try {
            run(bootstrap, topic, partitions, already, rounds);
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

    static void ok(String line) {
        System.out.println("OK " + line);
        System.out.flush();
    }

    static long cpuMs() {
        var os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
            return sun.getProcessCpuTime() / 1_000_000;
        }
        return -1;
    }

    static void run(String bootstrap, String topic, int partitions, long already, int rounds) throws Exception {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
             KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<TopicPartition> all = new ArrayList<>();
            for (int i = 0; i < partitions; i++) all.add(new TopicPartition(topic, i));
            consumer.assign(all);
            consumer.seekToBeginning(all);
            long started = System.nanoTime(), cpu0 = cpuMs();
            long read = readUntil(consumer, already, "the " + already + " records already there");
            ok("read " + read + " records already in " + partitions + " partitions");
            for (int r = 0; r < rounds; r++) {
                // A few partitions, spread over the topic, get all the new records.
                int partition = (r % 4) * (partitions / 4);
                producer.send(new ProducerRecord<>(topic, partition, "k" + r, "round-" + r)).get();
                read += readUntil(consumer, 1, "round " + r + "'s record in partition " + partition);
            }
            ok("read " + rounds + " records produced one at a time while consuming");
            long wallMs = (System.nanoTime() - started) / 1_000_000;
            System.out.println("BENCH records=" + read + " cpu_ms=" + (cpuMs() - cpu0) + " wall_ms=" + wallMs);
            System.out.flush();
        }
    }

    /** Polls until `n` records arrived (bounded); returns how many did. */
    static long readUntil(KafkaConsumer<String, String> consumer, long n, String what) {
        long got = 0, deadline = System.currentTimeMillis() + TIMEOUT_MS;
        while (got < n) {
            if (System.currentTimeMillis() > deadline) fail("timed out reading " + what + " (" + got + " of " + n + ")");
            got += consumer.poll(Duration.ofMillis(500)).count();
        }
        return got;
    }
}
