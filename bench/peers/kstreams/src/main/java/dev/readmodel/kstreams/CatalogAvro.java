package dev.readmodel.kstreams;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Decodes what tools/simulate writes: the Confluent wire format (0x00, a 4-byte big-endian
 * schema id, the Avro body), with the ids of schemas/catalog.yaml instead of a registry.
 * Each record is read with the newest catalog version of its full name as the reader schema,
 * as the projector does (v1 CustomerContactUpdated reaches {@code mobile} by its alias).
 * A message with an unknown id is returned as null and dropped by the topology.
 */
final class CatalogAvro implements Deserializer<GenericRecord> {
  private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
  private final ThreadLocal<BinaryDecoder> decoder = new ThreadLocal<>();

  CatalogAvro(Path catalog) throws IOException {
    // The catalog is a flat list of {id, file, topic}: two regexes read it without a YAML
    // library.
    Pattern idRe = Pattern.compile("^\\s*-\\s*id:\\s*(\\d+)\\s*$");
    Pattern fileRe = Pattern.compile("^\\s*file:\\s*(\\S+)\\s*$");
    Pattern versionRe = Pattern.compile("\\.v(\\d+)\\.avsc$");
    Map<Integer, Schema> byId = new HashMap<>();
    Map<String, int[]> newest = new HashMap<>(); // full name -> {id, version}
    Integer id = null;
    List<String> lines = Files.readAllLines(catalog);
    for (String line : lines) {
      Matcher m = idRe.matcher(line);
      if (m.matches()) {
        id = Integer.parseInt(m.group(1));
        continue;
      }
      m = fileRe.matcher(line);
      if (m.matches() && id != null) {
        String file = m.group(1);
        Schema s = new Schema.Parser().parse(catalog.getParent().resolve(file).toFile());
        byId.put(id, s);
        Matcher v = versionRe.matcher(file);
        int version = v.find() ? Integer.parseInt(v.group(1)) : 1;
        int[] cur = newest.get(s.getFullName());
        if (cur == null || version > cur[1]) {
          newest.put(s.getFullName(), new int[] {id, version});
        }
        id = null;
      }
    }
    for (Map.Entry<Integer, Schema> e : byId.entrySet()) {
      Schema reader = byId.get(newest.get(e.getValue().getFullName())[0]);
      readers.put(e.getKey(), new GenericDatumReader<>(e.getValue(), reader));
    }
  }

  @Override
  public GenericRecord deserialize(String topic, byte[] data) {
    if (data == null || data.length < 5 || data[0] != 0) {
      return null;
    }
    int id = ((data[1] & 0xff) << 24) | ((data[2] & 0xff) << 16) | ((data[3] & 0xff) << 8)
        | (data[4] & 0xff);
    GenericDatumReader<GenericRecord> reader = readers.get(id);
    if (reader == null) {
      return null;
    }
    try {
      BinaryDecoder d = DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, decoder.get());
      decoder.set(d);
      return reader.read(null, d);
    } catch (IOException | RuntimeException e) {
      throw new SerializationException("undecodable Avro body, schema id " + id, e);
    }
  }
}
