// Writes and checks the test vectors of protocol/src/message_set.rs with Apache
// Kafka's own record code (kafka-clients and kafka-storage 3.9.0, the last line
// whose broker still converts message formats v0/v1). See README.md here.
//
//   java -cp CLASSPATH KafkaOracle.java kafka    DIR          Kafka-built sets and down-conversions
//   java -cp CLASSPATH KafkaOracle.java produce  CASES.bin    Kafka's verdict on each produce input, to CASES.kafka
//   java -cp CLASSPATH KafkaOracle.java read     DIR          Kafka's reading of every DIR/*.bin (fetch side)

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.errors.CorruptRecordException;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.record.CompressionType;
import org.apache.kafka.common.record.ControlRecordType;
import org.apache.kafka.common.record.EndTransactionMarker;
import org.apache.kafka.common.record.MemoryRecords;
import org.apache.kafka.common.record.MemoryRecordsBuilder;
import org.apache.kafka.common.record.MutableRecordBatch;
import org.apache.kafka.common.record.Record;
import org.apache.kafka.common.record.RecordBatch;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.utils.BufferSupplier;
import org.apache.kafka.common.utils.PrimitiveRef;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.server.common.MetadataVersion;
import org.apache.kafka.storage.internals.log.AppendOrigin;
import org.apache.kafka.storage.internals.log.LogValidator;
import org.apache.kafka.storage.internals.log.RecordValidationException;

public class KafkaOracle {
    static final int MAX_MESSAGE_BYTES = 1_000_000;
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4"};

    record Rec(long timestamp, byte[] key, byte[] value) {}

    /**
     * The fixed records; message_set.rs's `oracle_records` makes the same. One
     * value spans several snappy (32 KiB) and lz4 (64 KiB) blocks when `big`.
     */
    static List<Rec> records(boolean big) {
        List<Rec> out = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            byte[] key = i % 3 == 0 ? null : ("key-" + i).getBytes(StandardCharsets.UTF_8);
            byte[] value;
            if (i % 5 == 0) value = null;
            else if (i % 7 == 0) value = new byte[0];
            else if (i == 8 && big) {
                value = new byte[70_000];
                for (int j = 0; j < value.length; j++) value[j] = (byte) ((j * 31 + j / 1000) & 0xff);
            } else value = ("value-" + i).repeat(i).getBytes(StandardCharsets.UTF_8);
            long ts = 1_600_000_000_000L + i * 1000L - (i % 4) * 3000L;
            out.add(new Rec(ts, key, value));
        }
        return out;
    }

    static Compression compression(String codec) {
        return Compression.of(CompressionType.forName(codec)).build();
    }

    static byte[] bytes(MemoryRecords r) {
        ByteBuffer b = r.buffer().duplicate();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    /** Hex, or for more than 64 bytes length and CRC-32: "#len:crc". */
    static String hex(byte[] b) {
        if (b == null) return "-";
        if (b.length > 64) {
            java.util.zip.CRC32 crc = new java.util.zip.CRC32();
            crc.update(b);
            return "#" + b.length + ":" + Long.toHexString(crc.getValue());
        }
        StringBuilder s = new StringBuilder(b.length * 2 + 1).append('x');
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }

    static String hex(ByteBuffer b) {
        if (b == null) return "-";
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return hex(a);
    }

    /** One line per record: offset timestamp logAppendTime key value. */
    static String dump(MemoryRecords records) {
        StringBuilder s = new StringBuilder();
        for (RecordBatch batch : records.batches()) {
            for (Record r : batch) {
                boolean lat = batch.timestampType() == TimestampType.LOG_APPEND_TIME;
                s.append(r.offset()).append(' ').append(r.timestamp()).append(' ').append(lat ? 1 : 0)
                    .append(' ').append(hex(r.key())).append(' ').append(hex(r.value())).append('\n');
            }
        }
        return s.toString();
    }

    static MemoryRecords build(byte magic, String codec, TimestampType type, long base, long logAppendTime, boolean headers) {
        ByteBuffer buf = ByteBuffer.allocate(1 << 21);
        MemoryRecordsBuilder b = MemoryRecords.builder(buf, magic, compression(codec), type, base, logAppendTime);
        long offset = base;
        for (Rec r : records(!codec.equals("none"))) {
            Header[] h = headers ? new Header[] {new RecordHeader("h", "x".getBytes(StandardCharsets.UTF_8))} : Record.EMPTY_HEADERS;
            b.appendWithOffset(offset++, r.timestamp(), r.key(), r.value(), h);
        }
        return b.build();
    }

    static void write(Path dir, String name, byte[] data) throws IOException {
        Files.write(dir.resolve(name), data);
    }

    static void down(Path dir, String name, MemoryRecords v2, long firstOffset) throws IOException {
        write(dir, name + ".bin", bytes(v2));
        for (byte magic = 0; magic <= 1; magic++) {
            MemoryRecords d = v2.downConvert(magic, firstOffset, Time.SYSTEM).records();
            write(dir, "down-v" + magic + "-" + name.substring(3) + ".bin", bytes(d));
            write(dir, "down-v" + magic + "-" + name.substring(3) + ".kafka", dump(d).getBytes(StandardCharsets.UTF_8));
        }
    }

    static void kafka(Path dir) throws IOException {
        Files.createDirectories(dir);
        for (String codec : CODECS) {
            for (byte magic = 0; magic <= 1; magic++) {
                MemoryRecords set = build(magic, codec, TimestampType.CREATE_TIME, 0, RecordBatch.NO_TIMESTAMP, false);
                write(dir, "v" + magic + "-" + codec + ".bin", bytes(set));
            }
            down(dir, "v2-" + codec, build((byte) 2, codec, TimestampType.CREATE_TIME, 1000, RecordBatch.NO_TIMESTAMP, true), 1000);
            down(dir, "v2-" + codec + "-lat", build((byte) 2, codec, TimestampType.LOG_APPEND_TIME, 1000, 1_700_000_000_000L, true), 1000);
        }
        down(dir, "v2-none-from1003", build((byte) 2, "none", TimestampType.CREATE_TIME, 1000, RecordBatch.NO_TIMESTAMP, false), 1003);

        // A transactional batch, its abort marker, then a plain gzip batch.
        ByteBuffer buf = ByteBuffer.allocate(1 << 16);
        MemoryRecordsBuilder txn = MemoryRecords.builder(buf, (byte) 2, Compression.NONE, TimestampType.CREATE_TIME, 1000,
            RecordBatch.NO_TIMESTAMP, 42L, (short) 1, 0, true, 7);
        for (int i = 0; i < 3; i++) txn.append(1_600_000_000_000L + i, null, ("txn-" + i).getBytes(StandardCharsets.UTF_8));
        byte[] a = bytes(txn.build());
        byte[] marker = bytes(MemoryRecords.withEndTransactionMarker(1003, 1_600_000_000_010L, 7, 42L, (short) 1,
            new EndTransactionMarker(ControlRecordType.ABORT, 0)));
        ByteBuffer plain = ByteBuffer.allocate(1 << 16);
        MemoryRecordsBuilder p = MemoryRecords.builder(plain, (byte) 2, compression("gzip"), TimestampType.CREATE_TIME, 1004);
        for (int i = 0; i < 2; i++) p.append(1_600_000_000_020L + i, ("k" + i).getBytes(StandardCharsets.UTF_8), ("plain-" + i).getBytes(StandardCharsets.UTF_8));
        byte[] c = bytes(p.build());
        ByteBuffer all = ByteBuffer.allocate(a.length + marker.length + c.length).put(a).put(marker).put(c);
        down(dir, "v2-txn", MemoryRecords.readableRecords(all.flip()), 1000);
    }

    static final LogValidator.MetricsRecorder NO_METRICS = new LogValidator.MetricsRecorder() {
        public void recordInvalidMagic() {}
        public void recordInvalidOffset() {}
        public void recordInvalidSequence() {}
        public void recordInvalidChecksums() {}
        public void recordNoKeyCompactedTopic() {}
    };

    /**
     * What a Kafka 3.9 leader does with these Produce v0-v2 records on a
     * CreateTime topic with compression.type=producer and
     * max.message.bytes=MAX_MESSAGE_BYTES: UnifiedLog.analyzeAndValidateRecords,
     * trimInvalidBytes, LogValidator, the size re-check; then ReplicaManager's
     * mapping of the exception to an error code.
     */
    static String produce(byte[] input) {
        try {
            MemoryRecords records = MemoryRecords.readableRecords(ByteBuffer.wrap(input));
            int validBytes = 0;
            CompressionType source = CompressionType.NONE;
            for (MutableRecordBatch batch : records.batches()) {
                if (batch.sizeInBytes() > MAX_MESSAGE_BYTES) throw new RecordTooLargeException("batch of " + batch.sizeInBytes());
                if (!batch.isValid()) throw new CorruptRecordException("Record is corrupt (stored crc = " + batch.checksum() + ")");
                validBytes += batch.sizeInBytes();
                CompressionType c = CompressionType.forId(batch.compressionType().id);
                if (c != CompressionType.NONE) source = c;
            }
            if (validBytes <= 0) return "empty\n";
            ByteBuffer trimmed = ByteBuffer.wrap(input, 0, validBytes).slice();
            LogValidator v = new LogValidator(MemoryRecords.readableRecords(trimmed), new TopicPartition("t", 0), Time.SYSTEM, source,
                Compression.of(source).build(), false, RecordBatch.MAGIC_VALUE_V2, TimestampType.CREATE_TIME, Long.MAX_VALUE, Long.MAX_VALUE,
                RecordBatch.NO_PARTITION_LEADER_EPOCH, AppendOrigin.CLIENT, MetadataVersion.latestProduction());
            LogValidator.ValidationResult r = v.validateMessagesAndAssignOffsets(PrimitiveRef.ofLong(0), NO_METRICS, BufferSupplier.NO_CACHING);
            for (RecordBatch b : r.validatedRecords.batches()) {
                if (b.sizeInBytes() > MAX_MESSAGE_BYTES) throw new RecordTooLargeException("converted batch of " + b.sizeInBytes());
            }
            return "ok\n" + dump(r.validatedRecords) + "batch " + hex(bytes(r.validatedRecords)) + "\n";
        } catch (RecordValidationException e) {
            return "error " + Errors.forException(e.invalidException()).code() + " " + oneLine(e.invalidException()) + "\n";
        } catch (Throwable t) {
            return "error " + Errors.forException(t).code() + " " + oneLine(t) + "\n";
        }
    }

    /** What Kafka's consumer-side reading makes of a fetched message set. */
    static String read(byte[] input) {
        try {
            MemoryRecords records = MemoryRecords.readableRecords(ByteBuffer.wrap(input));
            for (MutableRecordBatch batch : records.batches()) batch.ensureValid();
            return "ok\n" + dump(records);
        } catch (Throwable t) {
            return "error " + Errors.forException(t).code() + " " + oneLine(t) + "\n";
        }
    }

    static String oneLine(Throwable t) {
        return (t.getClass().getSimpleName() + ": " + t.getMessage()).replace('\n', ' ');
    }

    interface Judge {
        String judge(byte[] input);
    }

    static void each(Path dir, Judge judge) throws IOException {
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.bin")) {
            for (Path f : files) {
                String name = f.getFileName().toString();
                String verdict = judge.judge(Files.readAllBytes(f));
                Files.write(dir.resolve(name.substring(0, name.length() - 4) + ".kafka"), verdict.getBytes(StandardCharsets.UTF_8));
            }
        }
    }

    /**
     * Cases: (name length u16, name, data length u32, data)*, big-endian; the
     * verdicts: for each case a line "== name" and the verdict lines.
     */
    static void cases(Path file, Judge judge) throws IOException {
        ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(file));
        StringBuilder out = new StringBuilder();
        while (in.hasRemaining()) {
            byte[] name = new byte[in.getShort() & 0xffff];
            in.get(name);
            byte[] data = new byte[in.getInt()];
            in.get(data);
            out.append("== ").append(new String(name, StandardCharsets.UTF_8)).append('\n').append(judge.judge(data));
        }
        String path = file.toString();
        Files.write(Path.of(path.substring(0, path.length() - 4) + ".kafka"), out.toString().getBytes(StandardCharsets.UTF_8));
    }

    public static void main(String[] args) throws IOException {
        Path dir = Path.of(args[1]);
        switch (args[0]) {
            case "kafka" -> kafka(dir);
            case "produce" -> cases(dir, KafkaOracle::produce);
            case "read" -> each(dir, KafkaOracle::read);
            default -> throw new IllegalArgumentException(args[0]);
        }
    }
}
