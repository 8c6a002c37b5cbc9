// The demo shop's own script: consent banner, cart, and telling the snippet what happens.
// Everything here is what a site owner writes; the tracking itself is the snippet's job.
(function () {
  "use strict";
  var body = document.body;
  var CART_KEY = "nw_cart"; // the cart is the shop's own, strictly necessary state

  // --- Page view, with the department the page is about -------------------------------
  var pageCategory = body.getAttribute("data-page-category") || undefined;
  tracker("page_view", pageCategory ? { category: pageCategory } : {});

  // --- Consent banner -------------------------------------------------------------------
  var banner = document.getElementById("consent-banner");
  function choice() {
    try { return localStorage.getItem("nw_consent"); } catch (e) { return null; }
  }
  function decide(state) {
    try { localStorage.setItem("nw_consent", state); } catch (e) {}
    tracker("consent", state, { recorded: state === "granted" });
    banner.hidden = true;
    if (state === "granted") tracker("offers");
  }
  if (!choice()) banner.hidden = false;
  document.getElementById("consent-accept").addEventListener("click", function () { decide("granted"); });
  document.getElementById("consent-decline").addEventListener("click", function () { decide("denied"); });
  document.getElementById("privacy-settings").addEventListener("click", function (event) {
    event.preventDefault();
    banner.hidden = false;
  });

  // --- Cart -----------------------------------------------------------------------------
  function readCart() {
    try { return JSON.parse(sessionStorage.getItem(CART_KEY) || "[]"); } catch (e) { return []; }
  }
  function writeCart(lines) {
    try { sessionStorage.setItem(CART_KEY, JSON.stringify(lines)); } catch (e) {}
    renderCount(lines);
  }
  function renderCount(lines) {
    var count = lines.reduce(function (n, line) { return n + line.quantity; }, 0);
    document.getElementById("cart-count").textContent = String(count);
  }
  renderCount(readCart());

  // --- Product page -----------------------------------------------------------------------
  var product = document.querySelector(".product[data-product-id]");
  if (product) {
    var item = {
      product_id: product.getAttribute("data-product-id"),
      category: product.getAttribute("data-category"),
      price: Number(product.getAttribute("data-price")),
      name: product.getAttribute("data-name"),
    };
    tracker("product_view", { product_id: item.product_id, category: item.category, price: item.price, currency: "EUR" });
    document.getElementById("add-to-cart").addEventListener("click", function () {
      var lines = readCart();
      var line = lines.find(function (l) { return l.product_id === item.product_id; });
      if (line) line.quantity += 1; else lines.push({ product_id: item.product_id, category: item.category, price: item.price, name: item.name, quantity: 1 });
      writeCart(lines);
      tracker("add_to_cart", { product_id: item.product_id, category: item.category, price: item.price, quantity: 1, currency: "EUR" });
      document.getElementById("added").hidden = false;
    });
  }

  // --- Cart page ------------------------------------------------------------------------
  var table = document.getElementById("cart-lines");
  if (table) {
    var renderCart = function () {
      var lines = readCart();
      var tbody = table.querySelector("tbody");
      tbody.textContent = "";
      var total = 0;
      lines.forEach(function (line) {
        total += line.price * line.quantity;
        var row = document.createElement("tr");
        [line.name, String(line.quantity), "€" + (line.price * line.quantity).toFixed(2)].forEach(function (text) {
          var cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        });
        var remove = document.createElement("button");
        remove.className = "secondary";
        remove.textContent = "Remove";
        remove.addEventListener("click", function () {
          writeCart(readCart().filter(function (l) { return l.product_id !== line.product_id; }));
          tracker("remove_from_cart", { product_id: line.product_id, category: line.category, price: line.price, quantity: line.quantity, currency: "EUR" });
          renderCart();
        });
        var cell = document.createElement("td");
        cell.appendChild(remove);
        row.appendChild(cell);
        tbody.appendChild(row);
      });
      document.getElementById("cart-total").textContent = "€" + total.toFixed(2);
      document.getElementById("cart-empty").hidden = lines.length > 0;
      document.getElementById("checkout").disabled = lines.length === 0;
    };
    renderCart();
    document.getElementById("checkout").addEventListener("click", function () {
      var lines = readCart();
      if (!lines.length) return;
      var orderId = "NW-" + Date.now().toString(36).toUpperCase();
      var value = lines.reduce(function (v, l) { return v + l.price * l.quantity; }, 0);
      tracker("purchase", {
        order_id: orderId,
        value: Math.round(value * 100) / 100,
        currency: "EUR",
        items: lines.map(function (l) { return { product_id: l.product_id, category: l.category, price: l.price, quantity: l.quantity }; }),
      });
      writeCart([]);
      tracker("flush");
      location.href = "/checkout/thanks?order=" + encodeURIComponent(orderId);
    });
  }

  var orderLabel = document.getElementById("order-id");
  if (orderLabel) orderLabel.textContent = new URLSearchParams(location.search).get("order") || "";
})();
