package dev.readmodel.kstreams;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.readmodel.kstreams.Model.Customer;
import dev.readmodel.kstreams.Model.Loyalty;
import dev.readmodel.kstreams.Model.Order;
import dev.readmodel.kstreams.Model.Payment;
import dev.readmodel.kstreams.Model.Profile;
import dev.readmodel.kstreams.Model.Return;
import dev.readmodel.kstreams.Model.Shipment;
import dev.readmodel.kstreams.Model.Update;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.TableJoined;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * Customer 360 on Kafka Streams: the peer bench/run measures readmodel against.
 *
 * <p>Topology (DSL): each entity topic is aggregated into a KTable by its own key (orders,
 * payments, shipments, returns) with a version guard; payments, shipments and returns reach
 * their customer through a foreign-key join on the orders table (order id -> the order's
 * customer id); every change is then re-keyed by customer id, merged with the customers and
 * loyalty topics, and aggregated into one RocksDB store, {@code customer360}, that the
 * interactive-query endpoint reads by key.
 *
 * <p>Usage: App --bootstrap HOST:PORT --state-dir DIR --listen HOST:PORT [--catalog FILE]
 * [--app-id ID] [--threads N] [--http-threads N]
 */
public final class App {
  static final String STORE = "customer360";
  static final List<String> SOURCES =
      List.of("customers", "orders", "payments", "shipments", "loyalty", "returns");

  private App() {}

  static String str(GenericRecord r, String field) {
    Object v = r.get(field);
    return v == null ? null : v.toString();
  }

  static long num(GenericRecord r, String field) {
    return ((Number) r.get(field)).longValue();
  }

  static Update customerUpdate(GenericRecord r) {
    Update u = new Update();
    u.version = num(r, "version");
    Profile p = new Profile();
    switch (r.getSchema().getName()) {
      case "CustomerRegistered" -> {
        u.kind = "REGISTERED";
        p.customerId = str(r, "customer_id");
        p.name = str(r, "name");
        p.email = str(r, "email");
        p.phone = str(r, "phone");
        p.preferredChannel = str(r, "preferred_channel");
        p.marketingOptIn = (Boolean) r.get("marketing_opt_in");
        p.registeredAt = num(r, "occurred_at");
        p.updatedAt = p.registeredAt;
      }
      case "CustomerContactUpdated" -> {
        u.kind = "CONTACT";
        p.email = str(r, "email");
        p.phone = str(r, "mobile"); // v2's name; v1's phone reaches it by alias
        p.preferredChannel = str(r, "preferred_channel");
        p.marketingOptIn = (Boolean) r.get("marketing_opt_in");
        p.updatedAt = num(r, "occurred_at");
      }
      case "CustomerErased" -> u.kind = "ERASED";
      default -> {
        return null; // snapshots are not part of this peer
      }
    }
    u.profile = p;
    return u;
  }

  static Update loyaltyUpdate(GenericRecord r) {
    if (!r.getSchema().getName().equals("LoyaltyTierChanged")) {
      return null;
    }
    Update u = new Update();
    u.kind = "LOYALTY";
    u.version = num(r, "version");
    u.loyalty = new Loyalty();
    u.loyalty.tier = str(r, "tier");
    u.loyalty.points = num(r, "points");
    u.loyalty.updatedAt = num(r, "occurred_at");
    return u;
  }

  static Order order(GenericRecord r, Order o) {
    long v = num(r, "version");
    if (v <= o.version) {
      return o; // a duplicate or an older version of the order
    }
    switch (r.getSchema().getName()) {
      case "OrderCreated" -> {
        o.orderId = str(r, "order_id");
        o.customerId = str(r, "customer_id");
        o.createdAt = num(r, "occurred_at");
        o.totalCents = num(r, "total_cents");
        o.currency = str(r, "currency");
        o.lineCount = ((List<?>) r.get("lines")).size();
      }
      case "OrderCancelled" -> {
        o.orderId = str(r, "order_id");
        o.customerId = str(r, "customer_id");
        o.cancelled = true;
      }
      default -> {
        return o;
      }
    }
    o.version = v;
    return o;
  }

  static Payment payment(GenericRecord r, Payment p) {
    long v = num(r, "version");
    if (v <= p.version) {
      return p;
    }
    p.paymentId = str(r, "payment_id");
    p.orderId = str(r, "order_id");
    p.amountCents = num(r, "amount_cents");
    p.occurredAt = num(r, "occurred_at");
    switch (r.getSchema().getName()) {
      case "PaymentSettled" -> {
        p.status = "SETTLED";
        p.share = p.amountCents;
      }
      case "PaymentFailed" -> {
        p.status = "FAILED";
        p.currency = str(r, "currency");
        p.reason = str(r, "reason");
      }
      case "PaymentReversed" -> {
        p.status = "REVERSED";
        p.currency = str(r, "currency");
        p.reason = str(r, "reason");
        p.share = 0;
      }
      default -> {
        return p;
      }
    }
    p.version = v;
    return p;
  }

  static Shipment shipment(GenericRecord r, Shipment s) {
    long v = num(r, "version");
    if (v <= s.version) {
      return s;
    }
    s.shipmentId = str(r, "shipment_id");
    s.orderId = str(r, "order_id");
    s.occurredAt = num(r, "occurred_at");
    switch (r.getSchema().getName()) {
      case "ShipmentDispatched" -> s.status = "DISPATCHED";
      case "ShipmentDelayed" -> {
        s.status = "DELAYED";
        s.reason = str(r, "reason");
        s.newEta = num(r, "new_eta");
      }
      case "ShipmentDelivered" -> s.status = "DELIVERED";
      default -> {
        return s;
      }
    }
    s.version = v;
    return s;
  }

  static Return ret(GenericRecord r, Return x) {
    long v = num(r, "version");
    if (v <= x.version) {
      return x;
    }
    x.returnId = str(r, "return_id");
    x.orderId = str(r, "order_id");
    switch (r.getSchema().getName()) {
      case "ReturnOpened" -> {
        x.open = true;
        x.reason = str(r, "reason");
        x.openedAt = num(r, "occurred_at");
      }
      case "ReturnClosed" -> x.open = false;
      default -> {
        return x;
      }
    }
    x.version = v;
    return x;
  }

  static <V> Materialized<String, V, KeyValueStore<Bytes, byte[]>> store(String name,
      Serde<V> serde) {
    return Materialized.<String, V, KeyValueStore<Bytes, byte[]>>as(name)
        .withKeySerde(Serdes.String())
        .withValueSerde(serde);
  }

  static Topology topology(CatalogAvro avro) {
    StreamsBuilder b = new StreamsBuilder();
    Serde<GenericRecord> avroSerde = Serdes.serdeFrom((topic, v) -> {
      throw new UnsupportedOperationException("the peer never writes Avro");
    }, avro);
    Consumed<String, GenericRecord> in = Consumed.with(Serdes.String(), avroSerde);
    Grouped<String, GenericRecord> byKey = Grouped.with(Serdes.String(), avroSerde);
    Serde<Order> orderSerde = Model.serde(Order.class);
    Serde<Payment> paymentSerde = Model.serde(Payment.class);
    Serde<Shipment> shipmentSerde = Model.serde(Shipment.class);
    Serde<Return> returnSerde = Model.serde(Return.class);
    Serde<Update> updateSerde = Model.serde(Update.class);

    KStream<String, Update> customers = b.stream("customers", in)
        .filter((k, v) -> v != null).mapValues(App::customerUpdate).filter((k, v) -> v != null);
    KStream<String, Update> loyalty = b.stream("loyalty", in)
        .filter((k, v) -> v != null).mapValues(App::loyaltyUpdate).filter((k, v) -> v != null);

    KTable<String, Order> orders = b.stream("orders", in).filter((k, v) -> v != null)
        .groupByKey(byKey).aggregate(Order::new, (k, r, o) -> order(r, o),
            store("orders", orderSerde));
    KTable<String, Payment> payments = b.stream("payments", in).filter((k, v) -> v != null)
        .groupByKey(byKey).aggregate(Payment::new, (k, r, p) -> payment(r, p),
            store("payments", paymentSerde));
    KTable<String, Shipment> shipments = b.stream("shipments", in).filter((k, v) -> v != null)
        .groupByKey(byKey).aggregate(Shipment::new, (k, r, s) -> shipment(r, s),
            store("shipments", shipmentSerde));
    KTable<String, Return> returns = b.stream("returns", in).filter((k, v) -> v != null)
        .groupByKey(byKey).aggregate(Return::new, (k, r, x) -> ret(r, x),
            store("returns", returnSerde));

    // The foreign-key joins through the order: each payment, shipment and return learns its
    // customer from its order. An inner join holds a payment back until its order is known.
    KTable<String, Update> payUpd = payments.join(orders, p -> p.orderId, (p, o) -> {
      Update u = new Update();
      u.kind = "PAYMENT";
      u.payment = p;
      u.order = keyOnly(o);
      return u;
    }, TableJoined.as("payment-order"), store("payment-customer", updateSerde));
    KTable<String, Update> shipUpd = shipments.join(orders, s -> s.orderId, (s, o) -> {
      Update u = new Update();
      u.kind = "SHIPMENT";
      u.shipment = s;
      u.order = keyOnly(o);
      return u;
    }, TableJoined.as("shipment-order"), store("shipment-customer", updateSerde));
    KTable<String, Update> retUpd = returns.join(orders, x -> x.orderId, (x, o) -> {
      Update u = new Update();
      u.kind = "RETURN";
      u.ret = x;
      u.order = keyOnly(o);
      return u;
    }, TableJoined.as("return-order"), store("return-customer", updateSerde));

    KStream<String, Update> orderUpd = orders.toStream()
        .filter((k, o) -> o != null && o.customerId != null && o.createdAt > 0)
        .map((k, o) -> {
          Update u = new Update();
          u.kind = "ORDER";
          u.order = o;
          return KeyValue.pair(o.customerId, u);
        });
    KStream<String, Update> viaOrder = payUpd.toStream()
        .merge(shipUpd.toStream()).merge(retUpd.toStream())
        .filter((k, u) -> u != null)
        .map((k, u) -> {
          String customer = u.order.customerId;
          u.order = null;
          return KeyValue.pair(customer, u);
        });

    customers.merge(loyalty).merge(orderUpd).merge(viaOrder)
        .groupByKey(Grouped.with("c360", Serdes.String(), updateSerde))
        .aggregate(Customer::new, (k, u, c) -> c.apply(u),
            store(STORE, Model.serde(Customer.class)));
    return b.build();
  }

  /** The order reduced to what the join result needs: its customer. */
  static Order keyOnly(Order o) {
    Order k = new Order();
    k.customerId = o.customerId;
    return k;
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> opt = new HashMap<>(Map.of("--catalog", "schemas/catalog.yaml",
        "--app-id", "c360-kstreams", "--threads", "2", "--http-threads", "8",
        "--instance-id", "c360-kstreams-1"));
    for (int i = 0; i + 1 < args.length; i += 2) {
      opt.put(args[i], args[i + 1]);
    }
    for (String need : List.of("--bootstrap", "--state-dir", "--listen")) {
      if (!opt.containsKey(need)) {
        System.err.println("usage: App --bootstrap HOST:PORT --state-dir DIR --listen HOST:PORT"
            + " [--catalog FILE] [--app-id ID] [--instance-id ID] [--threads N]"
            + " [--http-threads N]");
        System.exit(2);
      }
    }
    String appId = opt.get("--app-id");
    String bootstrap = opt.get("--bootstrap");
    String listen = opt.get("--listen");
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.STATE_DIR_CONFIG, opt.get("--state-dir"));
    // One stream thread per core: the documented way to use the machine's cores.
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(opt.get("--threads")));
    // This instance's address for interactive queries (metadata of which instance has a key).
    props.put(StreamsConfig.APPLICATION_SERVER_CONFIG, listen);
    // Static membership: an instance restarted with the same id takes its place in the group
    // at once instead of waiting for the dead member's session to time out (45 s) and a
    // rebalance. Kafka Streams adds a per-thread suffix.
    props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, opt.get("--instance-id"));

    CatalogAvro avro = new CatalogAvro(Path.of(opt.get("--catalog")));
    Topology topology = topology(avro);
    KafkaStreams streams = new KafkaStreams(topology, props);
    AtomicLong runningAtMs = new AtomicLong();
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) {
        runningAtMs.compareAndSet(0, System.currentTimeMillis());
      }
    });
    Progress progress = new Progress(streams, bootstrap, appId);

    // The JDK's HTTP server leaves Nagle's algorithm on: a response written as headers then
    // body waits for the client's delayed ACK (~40 ms per keep-alive request).
    System.setProperty("sun.net.httpserver.nodelay", "true");
    String[] hp = listen.split(":");
    HttpServer http = HttpServer.create(
        new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 1024);
    http.setExecutor(Executors.newFixedThreadPool(Integer.parseInt(opt.get("--http-threads"))));
    Query query = new Query(streams);
    http.createContext("/v1/views/customer360/", query::get);
    http.createContext("/v1/dump", query::dump);
    http.createContext("/v1/status", ex -> {
      Map<String, Object> s = new LinkedHashMap<>();
      s.put("state", streams.state().toString());
      s.put("caught_up", progress.caughtUpAtMs > 0);
      s.put("caught_up_at_ms", progress.caughtUpAtMs);
      s.put("running_at_ms", runningAtMs.get());
      s.put("lag", progress.lag);
      send(ex, 200, Model.RENDER.writeValueAsBytes(s));
    });
    http.start();

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      http.stop(0);
      streams.close(Duration.ofSeconds(60));
      progress.admin.close();
    }));
    streams.start();
    Thread t = new Thread(progress::run, "caught-up");
    t.setDaemon(true);
    t.start();
  }

  static void send(HttpExchange ex, int status, byte[] body) throws IOException {
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
    if (body.length > 0) {
      try (OutputStream out = ex.getResponseBody()) {
        out.write(body);
      }
    }
    ex.close();
  }

  /** The interactive-query side: GET by key, and a dump of every key for the oracle check. */
  static final class Query {
    private final KafkaStreams streams;
    private volatile ReadOnlyKeyValueStore<String, Customer> store;

    Query(KafkaStreams streams) {
      this.streams = streams;
    }

    private ReadOnlyKeyValueStore<String, Customer> store() {
      ReadOnlyKeyValueStore<String, Customer> s = store;
      if (s == null) {
        s = streams.store(StoreQueryParameters.fromNameAndType(STORE,
            QueryableStoreTypes.<String, Customer>keyValueStore()));
        store = s;
      }
      return s;
    }

    void get(HttpExchange ex) throws IOException {
      String key = ex.getRequestURI().getPath().substring("/v1/views/customer360/".length());
      Customer c;
      try {
        c = store().get(key);
      } catch (InvalidStateStoreException e) {
        store = null; // not RUNNING (starting, restoring, rebalancing): try again later
        send(ex, 503, "{\"error\":\"not serving yet\"}".getBytes(StandardCharsets.UTF_8));
        return;
      }
      Map<String, Object> doc = c == null ? null : c.render();
      if (doc == null) {
        send(ex, 404, "{\"error\":\"not found\"}".getBytes(StandardCharsets.UTF_8));
        return;
      }
      Map<String, Object> body = new LinkedHashMap<>();
      body.put("key", key);
      body.put("sections", doc);
      send(ex, 200, Model.RENDER.writeValueAsBytes(body));
    }

    /** Every document in the simulator oracle's shape, one JSON line per key. */
    void dump(HttpExchange ex) throws IOException {
      ex.getResponseHeaders().set("Content-Type", "application/x-ndjson");
      ex.sendResponseHeaders(200, 0);
      try (OutputStream out = new BufferedOutputStream(ex.getResponseBody(), 1 << 16);
          KeyValueIterator<String, Customer> it = store().all()) {
        while (it.hasNext()) {
          KeyValue<String, Customer> kv = it.next();
          Map<String, Object> line = new LinkedHashMap<>();
          line.put("key", kv.key);
          Map<String, Object> doc = kv.value.render();
          line.put("erased", doc == null);
          if (doc != null) {
            line.put("sections", doc);
          }
          out.write(Model.RENDER.writeValueAsBytes(line));
          out.write('\n');
        }
      }
      ex.close();
    }
  }

  /**
   * Decides "caught up" from outside the topology, as an operator would from consumer lag:
   * the application's committed offsets have reached the end of every source topic and of
   * every internal topic it reads (repartition and foreign-key subscription topics), in two
   * polls in a row that saw the same offsets. Internal topics are written transactionally,
   * so their end is one past the last record's offset plus one (the commit marker).
   */
  static final class Progress {
    final KafkaStreams streams;
    final Admin admin;
    final String appId;
    volatile long caughtUpAtMs;
    volatile long lag = -1;

    Progress(KafkaStreams streams, String bootstrap, String appId) {
      this.streams = streams;
      this.appId = appId;
      Properties p = new Properties();
      p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      this.admin = Admin.create(p);
    }

    void run() {
      Map<TopicPartition, List<Long>> previous = null;
      while (true) {
        try {
          Thread.sleep(200);
          if (streams.state() != KafkaStreams.State.RUNNING) {
            previous = null;
            continue;
          }
          Set<String> topics = new HashSet<>(SOURCES);
          for (String t : admin.listTopics().names().get()) {
            if (t.startsWith(appId + "-") && !t.endsWith("-changelog")) {
              topics.add(t);
            }
          }
          Map<TopicPartition, OffsetSpec> want = new HashMap<>();
          for (TopicDescription d : admin.describeTopics(topics).allTopicNames().get().values()) {
            for (TopicPartitionInfo p : d.partitions()) {
              want.put(new TopicPartition(d.name(), p.partition()), OffsetSpec.latest());
            }
          }
          Map<TopicPartition, ListOffsetsResultInfo> ends = admin.listOffsets(want).all().get();
          Map<TopicPartition, OffsetAndMetadata> committed =
              admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get();
          long behind = 0;
          Map<TopicPartition, List<Long>> snapshot = new HashMap<>();
          for (Map.Entry<TopicPartition, ListOffsetsResultInfo> e : ends.entrySet()) {
            long end = e.getValue().offset();
            OffsetAndMetadata c = committed.get(e.getKey());
            long at = c == null ? 0 : c.offset();
            boolean internal = e.getKey().topic().startsWith(appId + "-");
            long slack = internal && end > 0 ? 1 : 0;
            behind += Math.max(0, end - slack - at);
            snapshot.put(e.getKey(), List.of(end, at));
          }
          lag = behind;
          if (behind == 0 && snapshot.equals(previous) && caughtUpAtMs == 0) {
            caughtUpAtMs = System.currentTimeMillis();
          }
          previous = behind == 0 ? snapshot : null;
        } catch (InterruptedException e) {
          return;
        } catch (Exception e) {
          previous = null; // the admin call failed; try again
        }
      }
    }
  }
}
