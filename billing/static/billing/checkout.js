// Confirms the top-up's PaymentIntent with Stripe.js (loaded before this file), then sends the
// browser to the return page; the webhook, not this page, credits the organization.
(() => {
  const form = document.getElementById("pay-form");
  if (!form) return;
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const stripe = Stripe(read("stripe-publishable-key"));
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("pay-button");
    button.disabled = true;
    const result = await stripe.confirmCardPayment(read("stripe-client-secret"), {
      payment_method: {card: card},
    });
    if (result.error) {
      document.getElementById("pay-error").textContent = result.error.message;
      button.disabled = false;
      return;
    }
    window.location.href = read("stripe-return-url") + "?redirect_status=" + result.paymentIntent.status;
  });
})();
