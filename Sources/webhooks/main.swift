import Integration

Route.serve(WebhooksHandler.init(configuration:))
