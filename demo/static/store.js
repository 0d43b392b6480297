// The demo store's own behaviour: a cart kept in localStorage, the checkout, and a tiny
// router for links marked data-spa. Handlers are delegated from document so content the
// router swaps in works without re-binding. Every SDK call goes through report(): the store
// must keep working when the SDK or the edge host is unreachable.
(function () {
  "use strict";

  var CART_KEY = "demo-store.cart";
  var shownPath = window.location.pathname;

  function report() {
    try {
      if (typeof window.nudge === "function") window.nudge.apply(window, arguments);
    } catch (err) {
      // The shop must not depend on the SDK; a failing call only loses that signal.
    }
  }

  function readCart() {
    try {
      var items = JSON.parse(window.localStorage.getItem(CART_KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (err) {
      return [];
    }
  }

  function writeCart(items) {
    try {
      window.localStorage.setItem(CART_KEY, JSON.stringify(items));
    } catch (err) {
      // Storage can be full or blocked (private modes); the cart is then per page.
    }
  }

  function cartTotal(items) {
    return items.reduce(function (sum, item) { return sum + (Number(item.price) || 0); }, 0);
  }

  function money(value) {
    return value.toFixed(2);
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  function discountCode() {
    var input = document.getElementById("checkout-code");
    return input ? input.value.trim().toUpperCase() : "";
  }

  function checkoutTotal() {
    var total = cartTotal(readCart());
    return discountCode() === "SAVE10" ? Math.round(total * 90) / 100 : total;
  }

  // Fills the parts of the page that depend on the cart (after a load or a swap).
  function hydrate() {
    var items = readCart();
    setText("cart-count", String(items.length));
    var list = document.getElementById("cart-items");
    if (list) {
      list.textContent = "";
      items.forEach(function (item, index) {
        var li = document.createElement("li");
        li.id = "cart-item-" + index;
        li.textContent = item.name + " — " + money(Number(item.price) || 0) + " EUR";
        list.appendChild(li);
      });
      var empty = document.getElementById("cart-empty");
      if (empty) empty.hidden = items.length > 0;
      setText("cart-total", money(cartTotal(items)));
    }
    var code = document.getElementById("checkout-code");
    if (code && !code.value) {
      code.value = new URLSearchParams(window.location.search).get("code") || "";
    }
    if (document.getElementById("checkout-total")) setText("checkout-total", money(checkoutTotal()));
  }

  function addToCart(button) {
    var items = readCart();
    items.push({
      id: button.getAttribute("data-product-id"),
      name: button.getAttribute("data-product-name"),
      price: Number(button.getAttribute("data-product-price")) || 0
    });
    writeCart(items);
    report("track", "add_to_cart");
    setText("add-to-cart-status", "Added to your cart.");
    hydrate();
  }

  function abandonCart() {
    report("track", "cart_abandon", {items: readCart().length});
    setText("abandon-status", "Your cart is saved for later.");
  }

  function submitCheckout(form) {
    var missing = ["checkout-name", "checkout-email", "checkout-card"].filter(function (id) {
      var input = document.getElementById(id);
      return !input || !input.value.trim();
    });
    if (missing.length) {
      setText("checkout-error", "Please fill in your name, email and card number.");
      document.getElementById(missing[0]).focus();
      return;
    }
    setText("checkout-error", "");
    var total = checkoutTotal();
    report("convert", total);
    writeCart([]);
    form.hidden = true;
    setText("thank-you-total", money(total));
    var thanks = document.getElementById("thank-you");
    if (thanks) thanks.hidden = false;
    hydrate();
  }

  // Single-page-app navigation: fetch the main content of `path` and swap it in. Any
  // failure falls back to an ordinary page load, so a link never goes dead.
  function navigate(path, push) {
    return fetch("/fragment" + path, {headers: {Accept: "application/json"}})
      .then(function (resp) {
        if (!resp.ok) throw new Error("fragment " + resp.status);
        return resp.json();
      })
      .then(function (page) {
        document.getElementById("main").innerHTML = page.html;
        shownPath = path;
        document.title = page.title + " · Brewline";
        if (push) window.history.pushState({spa: true}, "", path);
        window.scrollTo(0, 0);
        hydrate();
      })
      .catch(function () {
        window.location.assign(path);
      });
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var link = target.closest("a[data-spa]");
    if (link && event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey &&
        !event.altKey && link.origin === window.location.origin) {
      event.preventDefault();
      if (link.pathname !== window.location.pathname) navigate(link.pathname, true);
      return;
    }
    var button = target.closest("button");
    if (!button) return;
    if (button.id === "add-to-cart") addToCart(button);
    else if (button.id === "abandon-cart") abandonCart();
    else if (button.id === "consent-accept" || button.id === "consent-decline") {
      report("consent", button.id === "consent-accept" ? "granted" : "denied");
      var bar = document.getElementById("consent-bar");
      if (bar) bar.hidden = true;
    }
  });

  document.addEventListener("submit", function (event) {
    if (event.target instanceof HTMLFormElement && event.target.id === "checkout-form") {
      event.preventDefault();
      submitCheckout(event.target);
    }
  });

  document.addEventListener("input", function (event) {
    if (event.target instanceof Element && event.target.id === "checkout-code") hydrate();
  });

  // A change of the hash alone also fires popstate; only another path needs new content.
  window.addEventListener("popstate", function () {
    if (window.location.pathname !== shownPath) navigate(window.location.pathname, false);
  });

  hydrate();
})();
