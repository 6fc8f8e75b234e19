package dev.readmodel.kstreams;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The state the topology keeps, as plain classes with a Jackson JSON serde (what most Kafka
 * Streams code bases use for their own state), and the Customer 360 document rendered from it.
 */
final class Model {
  static final ObjectMapper JSON = new ObjectMapper()
      .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
      .setSerializationInclusion(JsonInclude.Include.NON_NULL)
      .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  /** Renders documents: null sections are written (profile and loyalty may be null). */
  static final ObjectMapper RENDER = new ObjectMapper();

  static final int MAX_ORDERS = 20; // the view's orders.max_items

  private Model() {}

  static <T> Serde<T> serde(Class<T> type) {
    Serializer<T> ser = (topic, v) -> {
      try {
        return v == null ? null : JSON.writeValueAsBytes(v);
      } catch (IOException e) {
        throw new SerializationException(e);
      }
    };
    Deserializer<T> de = (topic, b) -> {
      try {
        return b == null ? null : JSON.readValue(b, type);
      } catch (IOException e) {
        throw new SerializationException(e);
      }
    };
    return Serdes.serdeFrom(ser, de);
  }

  /** One order as the orders topic made it (KTable keyed by order id). */
  public static final class Order {
    public String orderId;
    public String customerId;
    public long createdAt;
    public long totalCents;
    public String currency;
    public long lineCount;
    public boolean cancelled;
    public long version;
  }

  /** A payment's latest state (KTable keyed by payment id). */
  public static final class Payment {
    public String paymentId;
    public String orderId;
    public String status; // SETTLED, FAILED, REVERSED
    public long amountCents;
    public String currency;
    public String reason;
    public long occurredAt;
    public long share; // its part of lifetime_settled_cents
    public long version;
  }

  /** A shipment's latest state (KTable keyed by shipment id). */
  public static final class Shipment {
    public String shipmentId;
    public String orderId;
    public String status; // DISPATCHED, DELAYED, DELIVERED
    public String reason;
    public Long newEta;
    public long occurredAt;
    public long version;
  }

  /** A return's latest state (KTable keyed by return id). */
  public static final class Return {
    public String returnId;
    public String orderId;
    public boolean open;
    public String reason;
    public long openedAt;
    public long version;
  }

  public static final class Profile {
    public String customerId;
    public String name;
    public String email;
    public String phone;
    public String preferredChannel;
    public Boolean marketingOptIn;
    public Long registeredAt;
    public Long updatedAt;
  }

  public static final class Loyalty {
    public String tier;
    public long points;
    public long updatedAt;
  }

  /**
   * One change to a customer's document, keyed by customer id on the way to the aggregate:
   * exactly one of the payload fields is set.
   */
  public static final class Update {
    public String kind; // REGISTERED, CONTACT, ERASED, LOYALTY, ORDER, PAYMENT, SHIPMENT, RETURN
    public long version; // customer or loyalty version for the direct kinds
    public Profile profile;
    public Loyalty loyalty;
    public Order order;
    public Payment payment;
    public Shipment shipment;
    public Return ret;
  }

  /**
   * The per-customer aggregate. It keeps every order, payment and shipment of the customer
   * (not only the 20 newest orders): an upstream KTable may re-emit or coalesce versions of
   * an entity, so the counters are derived from per-entity state, which makes every update
   * idempotent. Closed returns are removed.
   */
  public static final class Customer {
    public long customerVersion;
    public long loyaltyVersion;
    public boolean erased;
    public Profile profile;
    public Loyalty loyalty;
    public Map<String, Order> orders = new HashMap<>();
    public Map<String, Payment> payments = new HashMap<>();
    public Map<String, Shipment> shipments = new HashMap<>();
    public Map<String, Return> returns = new HashMap<>();

    Customer apply(Update u) {
      if (erased) {
        return this; // the customer is gone; nothing comes back
      }
      switch (u.kind) {
        case "REGISTERED", "CONTACT", "ERASED" -> {
          if (u.version <= customerVersion) {
            return this; // a duplicate or an older version of the customer
          }
          customerVersion = u.version;
          if (u.kind.equals("ERASED")) {
            erased = true;
            profile = null;
            loyalty = null;
            orders.clear();
            payments.clear();
            shipments.clear();
            returns.clear();
          } else if (u.kind.equals("REGISTERED") || profile == null) {
            profile = u.profile;
          } else {
            Profile p = u.profile;
            if (p.email != null) {
              profile.email = p.email;
            }
            if (p.phone != null) {
              profile.phone = p.phone;
            }
            profile.preferredChannel = p.preferredChannel;
            profile.marketingOptIn = p.marketingOptIn;
            profile.updatedAt = p.updatedAt;
          }
        }
        case "LOYALTY" -> {
          if (u.version > loyaltyVersion) {
            loyaltyVersion = u.version;
            loyalty = u.loyalty;
          }
        }
        case "ORDER" -> {
          Order old = orders.get(u.order.orderId);
          if (old == null || old.version <= u.order.version) {
            orders.put(u.order.orderId, u.order);
          }
        }
        case "PAYMENT" -> {
          Payment old = payments.get(u.payment.paymentId);
          if (old == null || old.version <= u.payment.version) {
            payments.put(u.payment.paymentId, u.payment);
          }
        }
        case "SHIPMENT" -> {
          Shipment old = shipments.get(u.shipment.shipmentId);
          if (old == null || old.version <= u.shipment.version) {
            shipments.put(u.shipment.shipmentId, u.shipment);
          }
        }
        case "RETURN" -> {
          Return old = returns.get(u.ret.returnId);
          if (old == null || old.version <= u.ret.version) {
            if (u.ret.open) {
              returns.put(u.ret.returnId, u.ret);
            } else {
              returns.remove(u.ret.returnId);
            }
          }
        }
        default -> {}
      }
      return this;
    }

    private Map<String, Object> renderProfile() {
      if (profile == null) {
        return null;
      }
      Map<String, Object> p = new LinkedHashMap<>();
      p.put("customer_id", profile.customerId);
      p.put("name", profile.name);
      p.put("email", profile.email);
      p.put("phone", profile.phone);
      p.put("preferred_channel", profile.preferredChannel);
      p.put("marketing_opt_in", profile.marketingOptIn);
      p.put("registered_at", profile.registeredAt);
      p.put("updated_at", profile.updatedAt);
      return p;
    }

    private Map<String, Object> renderLoyalty() {
      if (loyalty == null) {
        return null;
      }
      Map<String, Object> l = new LinkedHashMap<>();
      l.put("tier", loyalty.tier);
      l.put("points", loyalty.points);
      l.put("updated_at", loyalty.updatedAt);
      return l;
    }

    private List<Map<String, Object>> renderReturns() {
      List<Return> open = new ArrayList<>(returns.values());
      open.sort(Comparator.comparingLong((Return r) -> -r.openedAt).thenComparing(r -> r.returnId));
      List<Map<String, Object>> rets = new ArrayList<>();
      for (Return r : open) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("return_id", r.returnId);
        m.put("order_id", r.orderId);
        m.put("reason", r.reason);
        m.put("opened_at", r.openedAt);
        rets.add(m);
      }
      return rets;
    }

    /** The document's sections in the simulator oracle's shape; null once erased. */
    Map<String, Object> render() {
      if (erased) {
        return null;
      }
      Map<String, Object> doc = new LinkedHashMap<>();
      doc.put("profile", renderProfile());
      // The status of an order is the kind of its latest payment / shipment event.
      Map<String, Payment> lastPay = new HashMap<>();
      long settled = 0;
      List<Map<String, Object>> issues = new ArrayList<>();
      for (Payment pay : payments.values()) {
        lastPay.merge(pay.orderId, pay, (a, b) -> a.occurredAt >= b.occurredAt ? a : b);
        settled += pay.share;
        if (!pay.status.equals("SETTLED")) {
          Map<String, Object> i = new LinkedHashMap<>();
          i.put("payment_id", pay.paymentId);
          i.put("order_id", pay.orderId);
          i.put("kind", pay.status);
          i.put("amount_cents", pay.amountCents);
          i.put("currency", pay.currency);
          i.put("reason", pay.reason);
          i.put("occurred_at", pay.occurredAt);
          issues.add(i);
        }
      }
      Map<String, Shipment> lastShip = new HashMap<>();
      List<Map<String, Object>> exceptions = new ArrayList<>();
      for (Shipment s : shipments.values()) {
        lastShip.merge(s.orderId, s, (a, b) -> a.occurredAt >= b.occurredAt ? a : b);
        if (s.status.equals("DELAYED")) {
          Map<String, Object> e = new LinkedHashMap<>();
          e.put("shipment_id", s.shipmentId);
          e.put("order_id", s.orderId);
          e.put("reason", s.reason);
          e.put("new_eta", s.newEta);
          e.put("occurred_at", s.occurredAt);
          exceptions.add(e);
        }
      }
      List<Order> newest = new ArrayList<>(orders.values());
      newest.sort(Comparator.comparingLong((Order o) -> -o.createdAt)
          .thenComparing(o -> o.orderId));
      List<Map<String, Object>> list = new ArrayList<>();
      for (Order o : newest.subList(0, Math.min(MAX_ORDERS, newest.size()))) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("order_id", o.orderId);
        m.put("created_at", o.createdAt);
        m.put("total_cents", o.totalCents);
        m.put("currency", o.currency);
        m.put("line_count", o.lineCount);
        m.put("status", o.cancelled ? "CANCELLED" : "CREATED");
        Payment pay = lastPay.get(o.orderId);
        m.put("payment_status", pay == null ? "NONE" : pay.status);
        Shipment s = lastShip.get(o.orderId);
        m.put("shipment_status", s == null ? "NONE" : s.status);
        list.add(m);
      }
      doc.put("orders", list);
      issues.sort(Comparator.comparingLong((Map<String, Object> m) -> -(long) m.get("occurred_at"))
          .thenComparing(m -> (String) m.get("payment_id")));
      doc.put("payment_issues", issues);
      exceptions.sort(
          Comparator.comparingLong((Map<String, Object> m) -> -(long) m.get("occurred_at"))
              .thenComparing(m -> (String) m.get("shipment_id")));
      doc.put("delivery_exceptions", exceptions);
      doc.put("loyalty", renderLoyalty());
      doc.put("returns", renderReturns());
      Map<String, Object> counters = new LinkedHashMap<>();
      counters.put("lifetime_orders", (long) orders.size());
      counters.put("lifetime_settled_cents", settled);
      doc.put("counters", counters);
      return doc;
    }
  }
}
