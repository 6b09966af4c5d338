//! One moment's decision being built: the records it creates (customer, order, tasks
//! numbered per moment so a repeated decision names the same ones) and its pop-ups.

use super::*;

/// Builds one moment's actions; numbers the call's tasks.
pub(super) struct Decision<'a> {
    pub(super) header: &'a CallHeader,
    pub(super) phone: &'a PhoneNumber,
    pub(super) config: &'a MatrixConfig,
    /// Tasks are numbered per moment kind so that the same moment decided twice makes
    /// the same markers, and two moments never share one.
    pub(super) moment: &'static str,
    pub(super) tasks: usize,
    pub(super) actions: Vec<CrmAction>,
    /// The client's open order the call is about (tasks on the client link to it).
    pub(super) open_order: Option<EntityRef>,
    /// The call was missed (an inbound call nobody answered): its tasks say so.
    pub(super) missed: bool,
    /// What this moment creates (their step names), for the call's history record.
    pub(super) made_customer: Option<String>,
    pub(super) made_order: Option<String>,
}

impl<'a> Decision<'a> {
    pub(super) fn new(
        header: &'a CallHeader,
        phone: &'a PhoneNumber,
        config: &'a MatrixConfig,
        moment: &'static str,
    ) -> Self {
        Decision {
            header,
            phone,
            config,
            moment,
            tasks: 0,
            actions: Vec::new(),
            open_order: None,
            missed: false,
            made_customer: None,
            made_order: None,
        }
    }

    pub(super) fn senior(&self) -> Option<UserId> {
        self.config.directory.senior().first().copied()
    }

    /// A new customer and an order for them, both with `manager`; returns the order.
    pub(super) fn create_customer_and_order(
        &mut self,
        manager: Option<UserId>,
        source: Option<Source>,
    ) -> EntityRef {
        let customer = customer_external_id(self.phone);
        self.made_customer = Some(customer.clone());
        self.actions.push(CrmAction::CreateCustomer(NewCustomer {
            external_id: customer.clone(),
            phone: self.phone.e164().to_string(),
            first_name: None,
            manager_id: manager,
            source: source.clone(),
        }));
        self.create_order(EntityRef::Step(customer), manager, source)
    }

    pub(super) fn create_order(
        &mut self,
        customer: EntityRef,
        manager: Option<UserId>,
        source: Option<Source>,
    ) -> EntityRef {
        let order = order_external_id(self.header);
        self.made_order = Some(order.clone());
        self.actions.push(CrmAction::CreateOrder(NewOrder {
            external_id: order.clone(),
            customer,
            phone: self.phone.e164().to_string(),
            manager_id: manager,
            order_method: Some(self.config.order_method.clone()),
            status: None,
            source,
            comment: Some(format!(
                "Made by callbridge for the call {} from {}",
                self.header.external_id(),
                self.phone
            )),
        }));
        EntityRef::Step(order)
    }

    /// A task on a customer or an order (never on nothing, never for nobody).
    pub(super) fn task(
        &mut self,
        performer: Option<UserId>,
        on: On,
        text: String,
        commentary: String,
        complete: bool,
    ) {
        let Some(performer) = performer else {
            return;
        };
        self.tasks += 1;
        let marker = format!(
            "{}#{}{}",
            self.header.external_id(),
            self.moment,
            self.tasks
        );
        let (customer, order, open_order) = match on {
            On::Customer(c) => (Some(c), None, self.open_order.clone()),
            On::Order(o) => (None, Some(o), None),
        };
        self.actions.push(CrmAction::CreateTask(NewTask {
            marker,
            text,
            commentary: Some(commentary),
            performer_id: performer,
            customer,
            order,
            phone: Some(self.phone.e164().to_string()),
            complete,
            open_order,
            missed_call: self.missed,
        }));
    }

    pub(super) fn popup(
        &mut self,
        event: CallEventType,
        codes: Vec<String>,
        user_ids: Vec<UserId>,
        hangup: Option<HangupStatus>,
    ) {
        if codes.is_empty() && user_ids.is_empty() {
            return;
        }
        self.actions.push(CrmAction::CallEvent(CallEvent {
            event,
            phone: self.phone.e164().to_string(),
            codes,
            user_ids,
            hangup_status: hangup,
            call_external_id: self.header.external_id(),
            external_phone: self.header.did.clone(),
        }));
    }
}

/// What a task hangs on.
pub(super) enum On {
    Customer(EntityRef),
    Order(EntityRef),
}
