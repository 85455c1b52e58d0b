// One producer and one consumer of partition 0 of a topic, for benches/failover.sh:
// the Java client 4.4, which follows KIP-951 leader hints. The producer sends a record
// every 10 ms (acks=all, the client's defaults otherwise) and prints
// "ACK <epoch ms> <offset>" when one is acknowledged (or "ERR <epoch ms> <error>"); the
// consumer reads the partition from the beginning and prints "REC <epoch ms> <offset>"
// for every record. Runs for the given number of seconds, then exits.
//
//   java -cp <kafka clients classpath> FailoverClient.java <bootstrap> <topic> <seconds>

import java.time.Duration;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class FailoverClient {
    static synchronized void line(String s) {
        System.out.println(s);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        long until = System.currentTimeMillis() + Long.parseLong(args[2]) * 1000;

        Thread consumer = new Thread(() -> {
            Properties c = new Properties();
            c.put("bootstrap.servers", bootstrap);
            c.put("enable.auto.commit", "false");
            try (KafkaConsumer<String, String> k = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
                TopicPartition tp = new TopicPartition(topic, 0);
                k.assign(List.of(tp));
                k.seekToBeginning(List.of(tp));
                while (System.currentTimeMillis() < until) {
                    for (ConsumerRecord<String, String> r : k.poll(Duration.ofMillis(100))) {
                        line("REC " + System.currentTimeMillis() + " " + r.offset());
                    }
                }
            }
        });
        consumer.start();

        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("linger.ms", "0");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; System.currentTimeMillis() < until; i++) {
                producer.send(new ProducerRecord<>(topic, 0, null, "r" + i), (md, e) -> {
                    if (e != null) {
                        line("ERR " + System.currentTimeMillis() + " " + e);
                    } else {
                        line("ACK " + System.currentTimeMillis() + " " + md.offset());
                    }
                });
                Thread.sleep(10);
            }
        }
        consumer.join();
    }
}
