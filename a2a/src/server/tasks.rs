//! `GetTask` and `CancelTask`: tasks in flight and stored exchanges.

use super::*;

impl A2aServer {
    pub(super) async fn get_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        let request: GetTaskRequest = parse_params(params, "GetTask")?;
        to_raw(&self.known_task(caller, module, &request.id).await?)
    }

    pub(super) async fn cancel_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        let request: CancelTaskRequest = parse_params(params, "CancelTask")?;
        if let Some((flight, mut events)) = self.flights.follow(&request.id, caller, module) {
            flight.cancel.cancel();
            // The exchange reports its end (canceled, or the answer that beat the cancel).
            while let Ok(event) = events.recv().await {
                if is_last(&event) {
                    break;
                }
            }
            drop(flight);
            return to_raw(&self.known_task(caller, module, &request.id).await?);
        }
        // Not in flight here: finished (not cancelable), or not found.
        let (_, in_flight) = self.stored_task(caller, module, &request.id).await?;
        if in_flight {
            Err(RpcError::new(
                error_code::TASK_NOT_CANCELABLE,
                format!(
                    "task {} is running in another process and cannot be canceled from here",
                    request.id
                ),
            ))
        } else {
            Err(RpcError::new(
                error_code::TASK_NOT_CANCELABLE,
                format!("task {} has finished and cannot be canceled", request.id),
            ))
        }
    }

    /// The task `id` between the caller and `module` as it stands: in flight here, ended
    /// without a reply the store could show (failed or canceled, remembered), or as stored.
    pub(super) async fn known_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        id: &str,
    ) -> Result<Task, RpcError> {
        if let Some(working) = self
            .flights
            .follow(id, caller, module)
            .and_then(|(flight, _)| flight.working())
        {
            return Ok(working);
        }
        if let Some((_, _, task)) = self
            .unanswered
            .get(&id.to_owned())
            .filter(|(c, m, _)| c == caller && m == module)
        {
            return Ok(task);
        }
        Ok(self.stored_task(caller, module, id).await?.0)
    }
}
